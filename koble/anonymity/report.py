"""The anonymisation report: Markdown, JSON, a self-contained HTML page with charts, and the
release certificate, written together into one directory.

The report says what was asked (k, suppression limit, l, t, metric), what was chosen (one
level per quasi-identifier, by name), what it cost (loss, withheld records) and what it
achieved (class sizes and re-identification risk before and after). When no generalisation
meets the requirements it says so, for the job to go back to the applicant.
"""

from __future__ import annotations

import json
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from koble.anonymity.config import AnonymiseConfig
from koble.anonymity.release import AnonymityCheck, Release, anonymise_file
from koble.anonymity.report_html import render_html
from koble.files import OutputSet

__all__ = ["REPORT_FILES", "anonymise_with_report", "report_data", "why_not", "write_report"]


#: The report's files by kind; the certificate last.
_REPORT_NAMES = {
    "markdown": "report.md",
    "json": "report.json",
    "html": "report.html",
    "certificate": "certificate.json",
}
#: Every file ``anonymise`` writes into its report directory.
REPORT_FILES = ("withheld.parquet", *_REPORT_NAMES.values())


def _risk(check: AnonymityCheck | None) -> dict[str, Any] | None:
    return None if check is None else check.risk.to_dict()


def why_not(release: Release) -> list[str]:
    """Why no generalisation met the requirements, in words (empty for a release): k beyond
    the records (or persons) there are, and what even the most general node withholds
    against the limit."""
    r, config = release.result, release.config
    if r.feasible:
        return []
    reasons = []
    level = release.before.person_level
    if config.person is None and config.k > r.rows:
        reasons.append(f"k = {config.k:,} exceeds the {r.rows:,} records")
    elif level is not None and config.k > level.persons:
        reasons.append(f"k = {config.k:,} exceeds the {level.persons:,} persons")
    if r.least_suppressed is not None:
        reasons.append(
            f"even with every quasi-identifier at its top level, {r.least_suppressed:,} of "
            f"{r.rows:,} records fail the requirements ({', '.join(r.criteria)})"
            + (", and no generalisation withholds fewer" if r.requirements.monotone else "")
            + f"; the suppression limit of {r.suppression_limit:.1%} allows {r.allowed:,}"
        )
    return reasons or ["no generalisation meets the requirements within the suppression limit"]


def report_data(release: Release) -> dict[str, Any]:
    """Everything the renderers show, as plain JSON-ready data (no record values beyond the
    top values of each quasi-identifier, which are the generalised categories)."""
    r = release.result
    return {
        "verdict": "released" if r.feasible else "not anonymisable under these requirements",
        "why": why_not(release),
        "certificate": release.certificate(),
        "before": release.before.to_dict(),
        "after": None if release.after is None else release.after.to_dict(),
        "distributions": release.distributions,
        "seconds": release.seconds,
        "withheld_file": release.withheld,
    }


def _persons_line(data: dict[str, Any]) -> list[str]:
    after = data["after"]
    if not after or not after.get("person"):
        return []
    return [
        f"- k counts persons (`{after['person']}`, not released); the fewest persons in a "
        f"released class: {after['smallest_class_persons']:,}"
    ]


def _person_level(data: dict[str, Any]) -> list[str]:
    """The person-level figures before and after (a file with several rows per person), the
    model judged, and what the release still fails of it; nothing without a person column."""
    checks = [(w, data[w]) for w in ("before", "after") if data[w] and data[w].get("person_level")]
    if not checks:
        return []
    first = checks[0][1]["person_level"]
    lines = [
        "",
        f"## Person level (model {checks[-1][1]['model']}, k = {first['k']}, m = {first['m']})",
        "",
        "Persons grouped by the set (or multiset) of their quasi-identifier tuples, and by the "
        "set with the columns constant within every person; k^m: persons with m or fewer "
        "tuples held by fewer than k persons.",
        "",
        "| | persons | unique (set) | under k (set) | under k (multiset) "
        "| unique (set + constant) | under k (set + constant) | k^m | k^m (+ constant) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for when, check in checks:
        level = check["person_level"]
        plain, multi, more = level["by_set"], level["by_multiset"], level["by_set_with_constant"]
        km = [("n/a" if n is None else f"{n:,}")
              for n in (level["km_failing"], level["km_failing_with_constant"])]  # fmt: skip
        lines.append(
            f"| {when} | {level['persons']:,} | {plain['unique']:,} | {plain['under_k']:,} "
            f"| {multi['under_k']:,} | {more['unique']:,} | {more['under_k']:,} "
            f"| {km[0]} | {km[1]} |"
        )
    lines.append("")
    for when, check in checks:
        level = check["person_level"]
        constant = ", ".join(level["constant_columns"]) or "none"
        added = ", ".join(level["added_columns"]) or "none"
        lines.append(f"- person-constant columns {when}: {constant} (not quasi-identifiers: "
                     f"{added})")  # fmt: skip
    after = data["after"]
    if after and after.get("person_level") and after["failures"]:
        lines.append(f"- the release does not meet: {'; '.join(after['failures'])}")
    return lines


def _model_lines(cert: dict[str, Any]) -> list[str]:
    """The privacy model used and those tried before it, the columns a person model made
    quasi-identifiers, and what the person shape did: nothing for a plain row release."""
    model, shape = cert["model"], cert["shape"]
    lines = []
    if model["tried"] and model["tried"] != ["row"]:
        lines.append(f"- model: {model['used']}")
        if len(model["tried"]) > 1:
            lines.append(f"- models tried, strictest first: {', '.join(model['tried'])}")
    if model["person_constant_quasi_identifiers"]:
        lines.append("- constant within every person, so quasi-identifiers too: "
                     + ", ".join(model["person_constant_quasi_identifiers"]))  # fmt: skip
    if shape is not None:
        lines += [f"- delivery shape: {line}" for line in shape["columns"]]
    return lines


def _chosen(data: dict[str, Any]) -> list[str]:
    """The chosen level of each quasi-identifier (level of its hierarchy's height), the loss
    and what was withheld; when nothing was released, why, and no levels at all."""
    cert = data["certificate"]
    figures = cert["figures"]
    if data["after"] is None:
        return ["## Why nothing was released", "", *(f"- {why}" for why in data["why"]), "",
                "No generalisation was chosen (none met the requirements) and no file was "
                "written.", ""]  # fmt: skip
    withheld = cert["withheld"]["persons"]
    return [
        "## Chosen generalisation",
        "",
        "| quasi-identifier | level | of | meaning |",
        "|---|---:|---:|---|",
        *(f"| {n} | {v['level']} | {v['height']} | {v['name']} |"
          for n, v in cert["levels"].items()),
        "",
        f"- loss ({figures['metric']}): {figures['loss']:.6g}",
        f"- released classes: {figures['classes']:,}; smallest: {figures['min_class_size']:,}",
        *_persons_line(data),
        f"- withheld records: {figures['suppressed']:,} of {cert['input']['rows']:,} "
        f"(allowed {figures['allowed']:,})"
        + ("" if withheld is None else f"; {withheld:,} persons withheld whole"),
    ]  # fmt: skip


def _files(cert: dict[str, Any]) -> list[str]:
    """The input's hash, and the release's and withheld records' when there are any."""
    lines = [f"- input `{cert['input']['path']}` sha256 `{cert['input']['sha256']}`"]
    if cert["output"]["path"] is None:
        return [*lines, "- output: none (nothing released)"]
    return [
        *lines,
        f"- output `{cert['output']['path']}` sha256 `{cert['output']['sha256']}`",
        f"- withheld records (not for release) sha256 `{cert['withheld']['sha256']}`",
    ]


def _markdown(data: dict[str, Any]) -> str:
    cert = data["certificate"]
    figures, params = cert["figures"], cert["parameters"]
    lines = [
        "# Anonymisation report",
        "",
        f"**Verdict:** {data['verdict']}",
        "",
        "## Requirements",
        "",
        f"- k = {params['k']:,}, suppression limit {params['suppression']:.1%}",
        f"- criteria: {', '.join(figures['criteria'])}",
        f"- loss metric: {figures['metric']}",
        *_model_lines(cert),
        "",
        *_chosen(data),
        f"- search: {cert['search']['evaluated']:,} of {cert['search']['lattice_size']:,} nodes "
        f"evaluated, {cert['search']['tagged']:,} tagged",
        "",
        "## Risk",
        "",
        "| | records | classes | smallest class | prosecutor max | prosecutor avg | at risk |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for when in ("before", "after"):
        check = data[when]
        if check is None:
            continue
        p = check["risk"]["prosecutor"]
        lines.append(
            f"| {when} | {check['rows']:,} | {check['classes']:,} | {check['smallest_class']:,} "
            f"| {p['highest']:.3f} | {p['average']:.4f} | {p['records_at_risk']:,} |"
        )
        j = check["risk"]["journalist"]
        if j is not None:
            lines.append(
                f"| {when} (journalist) | | | | {j['highest']:.3f} | {j['average']:.4f} "
                f"| {j['records_at_risk']:,} |"
            )
    lines += _person_level(data)
    after_sizes = data["after"]["class_sizes"] if data["after"] else None
    lines += ["", "## Class sizes (records per class-size band)", "",
              "| class size | before | after |" if after_sizes else "| class size | before |",
              "|---|---:|---:|" if after_sizes else "|---|---:|"]  # fmt: skip
    for band, n in data["before"]["class_sizes"].items():
        after = "" if after_sizes is None else f" {after_sizes.get(band, 0):,} |"
        lines.append(f"| {band} | {n:,} |{after}")
    lines += [
        "",
        "## Files",
        "",
        *_files(cert),
        "",
    ]
    return "\n".join(lines)


def _html(data: dict[str, Any], markdown: str) -> str:
    """The HTML page (:func:`koble.anonymity.report_html.render_html`)."""
    return render_html(data, markdown)


def anonymise_with_report(
    source: str | Path, config: AnonymiseConfig, output: str | Path, directory: str | Path
) -> tuple[Release, dict[str, Path]]:
    """:func:`anonymise_file` into ``output`` and ``directory``/withheld.parquet, with the
    report and certificate (:func:`write_report`) in ``directory``: all of them appear
    together or none does. They are renamed into place with the release last, so a release
    never stands without its certificate and report, even if the command is killed."""
    directory = Path(directory)
    with OutputSet() as outputs:
        release = anonymise_file(source, config, output, directory / REPORT_FILES[0],
                                 outputs=outputs)  # fmt: skip
        started = time.perf_counter()
        files = write_report(release, directory, outputs=outputs)
    # after the report was written (it cannot hold its own time): with the commit
    release.seconds["report"] = time.perf_counter() - started
    return release, files


def write_report(
    release: Release, directory: str | Path, *, outputs: OutputSet | None = None
) -> dict[str, Path]:
    """Write report.md, report.json, report.html and certificate.json into ``directory``,
    atomically, each file whole; with ``outputs`` as part of that set of outputs."""
    directory = Path(directory)
    data = report_data(release)
    markdown = _markdown(data)
    files = {kind: directory / name for kind, name in _REPORT_NAMES.items()}
    certificate = json.dumps(data["certificate"], indent=2, sort_keys=True, allow_nan=False) + "\n"
    texts = {
        "markdown": markdown,
        "json": json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n",
        "html": _html(data, markdown),
        "certificate": certificate,
    }
    with OutputSet() if outputs is None else nullcontext(outputs) as staged:
        for name, text in texts.items():
            with staged.file(files[name]) as temp:
                temp.write_bytes(text.encode("utf-8"))
    return files
