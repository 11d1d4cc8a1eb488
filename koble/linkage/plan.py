"""A linkage plan: steps, each owned by one party, and the transfers between parties.

The plan is pure data (frozen dataclasses) and knows nothing of engines: an executor runs it,
a person reads it (:meth:`Plan.to_text`), a diagram shows it (:meth:`Plan.to_mermaid`), and
tests check it (:meth:`Plan.to_json`). Every transfer lists the columns it carries, so a
privacy check can see where fødselsnummer goes.

Parties (design.md §1.1): ``operator`` (the linkage operator: population file, key list,
serial numbers, central linkage, the anonymity gate), ``ttp`` (the pseudonym service holding
registry pseudonym keys), ``registry:<id>`` for each registry, and ``researcher``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final, Literal, get_args

__all__ = [
    "ACTIONS",
    "FNR",
    "OPERATOR",
    "RESEARCHER",
    "SERIAL",
    "TTP",
    "PartRoute",
    "Party",
    "Plan",
    "PlanPart",
    "PlanRoute",
    "Refusal",
    "Step",
    "Transfer",
    "registry_party",
]

OPERATOR: Final = "operator"
TTP: Final = "ttp"
RESEARCHER: Final = "researcher"
#: Column names the plan uses for the identifiers it moves.
FNR: Final = "fnr"
SERIAL: Final = "lopenr"

Action = Literal[
    "assign_serials",
    "send_population_extract",
    "pseudonymise_for_registry",
    "consent_filter",
    "extract",
    "link_centrally",
    "anonymity_gate",
    "deliver",
    "receive",
    "refuse",
    "sealed_ingest",  # a registry loads its sealed feed (TTP pseudonymises), first
    # identity recovery (koble.recovery): records without a usable number
    "prepare_recovery",  # the holder picks them out, with their names, for the TTP
    "resolve_identities",  # the TTP resolves them against its population register
    "apply_recovery",  # a registry fills in the numbers the TTP resolved
]
ACTIONS: Final = get_args(Action)
PartyKind = Literal["operator", "ttp", "registry", "researcher"]
PlanRoute = Literal["distributed", "central-anonymous", "refused"]


def registry_party(registry: str) -> str:
    return f"registry:{registry}"


@dataclass(frozen=True)
class Party:
    """A party; ``pseudonymous`` registries may never receive fødselsnummer."""

    id: str
    kind: PartyKind
    name: str
    pseudonymous: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "name": self.name,
            "pseudonymous": self.pseudonymous,
        }


@dataclass(frozen=True)
class Step:
    """One action by one party: reads ``inputs`` (files it holds), writes ``outputs``."""

    id: str
    party: str
    action: Action
    description: str
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    registry: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "party": self.party,
            "action": self.action,
            "description": self.description,
            "inputs": list(self.inputs),
            "outputs": list(self.outputs),
            "registry": self.registry,
        }


@dataclass(frozen=True)
class Transfer:
    """A file moved from one party's outbox to another's inbox, with the columns it carries."""

    id: str
    source: str
    target: str
    file: str
    columns: tuple[str, ...]
    after: str  # the step that writes the file

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "from": self.source,
            "to": self.target,
            "file": self.file,
            "columns": list(self.columns),
            "after": self.after,
        }


@dataclass(frozen=True)
class Refusal:
    """A registry the plan leaves out, and why; ``start``–``end`` when only those data years
    are refused (NPR before 2008: de-identified), the rest of the request being planned."""

    registry: str
    reason: str
    start: int | None = None
    end: int | None = None

    @property
    def key(self) -> str:
        """Unique within a plan: the registry, with the refused years if only they are."""
        return self.registry if self.start is None else f"{self.registry}-{self.start}-{self.end}"

    @property
    def label(self) -> str:
        """The registry, with the refused years if only they are."""
        return self.registry if self.start is None else f"{self.registry} {self.start}–{self.end}"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"registry": self.registry, "reason": self.reason}
        if self.start is not None:
            out["period"] = [self.start, self.end]
        return out


PartRoute = Literal["ttp-pseudonym", "distributed", "refused"]


@dataclass(frozen=True)
class PlanPart:
    """Data years ``start``–``end`` of a job's request for ``requested``, and how they are
    planned: the registry that holds them (a successor, Legemiddelregisteret for
    Reseptregisteret from 2022, when the request's years reach past a succession), the
    identity model in force for them, the route, and the approval they come under (always the
    request's: a successor needs none of its own beyond the job's request). A request whose
    years cross no regime boundary has one part."""

    requested: str
    registry: str
    start: int
    end: int
    identity_model: str
    route: PartRoute
    approval: str
    reason: str | None = None

    @property
    def successor(self) -> bool:
        """Whether another registry than the one asked holds these years."""
        return self.registry != self.requested

    def describe(self) -> str:
        """One line: years, holder, identity model, route (or why refused)."""
        holder = self.registry + (f" (successor of {self.requested})" if self.successor else "")
        how = (
            f"refused: {self.reason}"
            if self.route == "refused"
            else f"{self.route} route, under the job's approval for {self.requested} "
            f"({self.approval})"
        )
        return f"{self.start}–{self.end}: {holder}, {self.identity_model}; {how}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "requested": self.requested,
            "registry": self.registry,
            "period": [self.start, self.end],
            "identity_model": self.identity_model,
            "route": self.route,
            "approval": self.approval,
            "successor": self.successor,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class Plan:
    project_id: str
    title: str
    route: PlanRoute
    parties: tuple[Party, ...]
    steps: tuple[Step, ...]
    transfers: tuple[Transfer, ...]
    refusals: tuple[Refusal, ...] = ()
    notes: tuple[str, ...] = ()
    catalogue_version: str = ""
    #: Every request's data years, as planned: by regime and holder (:class:`PlanPart`).
    parts: tuple[PlanPart, ...] = ()

    @property
    def accepted(self) -> tuple[PlanPart, ...]:
        """The planned (not refused) parts, in plan order: one per registry."""
        return tuple(p for p in self.parts if p.route != "refused")

    def part(self, registry: str) -> PlanPart | None:
        """The planned part a registry takes part in (None if it has none)."""
        return next((p for p in self.accepted if p.registry == registry), None)

    @property
    def split(self) -> tuple[str, ...]:
        """The requests whose years are split by regime or handed on to a successor."""
        counts: dict[str, int] = {}
        for p in self.parts:
            counts[p.requested] = counts.get(p.requested, 0) + (2 if p.successor else 1)
        return tuple(r for r, n in counts.items() if n > 1)

    def party(self, ident: str) -> Party:
        for party in self.parties:
            if party.id == ident:
                return party
        raise KeyError(ident)

    def steps_of(self, party: str) -> list[Step]:
        return [s for s in self.steps if s.party == party]

    def received_by(self, party: str) -> list[Transfer]:
        return [t for t in self.transfers if t.target == party]

    def sent_by(self, party: str) -> list[Transfer]:
        return [t for t in self.transfers if t.source == party]

    def step(self, ident: str) -> Step:
        for step in self.steps:
            if step.id == ident:
                return step
        raise KeyError(ident)

    def transfers_after(self, step: str) -> list[Transfer]:
        return [t for t in self.transfers if t.after == step]

    # --- renderings -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "project": {"id": self.project_id, "title": self.title},
            "route": self.route,
            "catalogue_version": self.catalogue_version,
            "parties": [p.to_dict() for p in self.parties],
            "steps": [s.to_dict() for s in self.steps],
            "transfers": [t.to_dict() for t in self.transfers],
            "refusals": [r.to_dict() for r in self.refusals],
            "notes": list(self.notes),
            "periods": [p.to_dict() for p in self.parts],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False)

    def to_text(self) -> str:
        """For each party: what it receives, what it does, what it sends."""
        out = [f"Plan for {self.project_id}: {self.title}", f"Route: {self.route}"]
        if self.catalogue_version:
            out.append(f"Catalogue: {self.catalogue_version}")
        for party in self.parties:
            out += ["", f"== {party.name} [{party.id}] =="]
            received = self.received_by(party.id)
            out.append("  receives:" if received else "  receives: nothing")
            out += [f"    - {_carry(t)} from {t.source}" for t in received]
            steps = self.steps_of(party.id)
            out.append("  does:" if steps else "  does: nothing")
            out += [f"    {i}. {s.description}" for i, s in enumerate(steps, 1)]
            sent = self.sent_by(party.id)
            out.append("  sends:" if sent else "  sends: nothing")
            out += [f"    - {_carry(t)} to {t.target}" for t in sent]
        if self.split:
            out += ["", "Periods (split by identity model and holder):"]
            for requested in self.split:
                parts = [p for p in self.parts if p.requested == requested]
                out.append(f"  - {requested} {parts[0].start}–{parts[-1].end}:")
                out += [f"      {p.describe()}" for p in parts]
        if self.refusals:
            out += ["", "Refused:"]
            out += [f"  - {r.label}: {r.reason}" for r in self.refusals]
        if self.notes:
            out += ["", "Notes:"]
            out += [f"  - {n}" for n in self.notes]
        return "\n".join(out) + "\n"

    def to_mermaid(self) -> str:
        """A flowchart: one subgraph per party holding its steps; transfers as labelled edges."""
        out = ["flowchart LR"]
        for party in self.parties:
            out.append(f'  subgraph {_node(party.id)}["{_label(party.name)}"]')
            for step in self.steps_of(party.id):
                out.append(f'    {_node(step.id)}["{_label(step.action)}"]')
            out.append("  end")
        for step in self.steps:
            for later in self.steps_of(step.party):
                if set(step.outputs) & set(later.inputs):
                    out.append(f"  {_node(step.id)} --> {_node(later.id)}")
        for t in self.transfers:
            target = next((s.id for s in self.steps_of(t.target) if t.file in s.inputs), None)
            dest = _node(target) if target else _node(t.target)
            label = _label(f"{t.file}: {', '.join(t.columns) or 'document'}")
            out.append(f'  {_node(t.after)} -->|"{label}"| {dest}')
        out += self._mermaid_periods()
        return "\n".join(out) + "\n"

    def _mermaid_periods(self) -> list[str]:
        """A node per split request, an edge per part to the step that handles its years."""
        out: list[str] = []
        for requested in self.split:
            parts = [p for p in self.parts if p.requested == requested]
            node = _node(f"period-{requested}")
            out.append(f'  {node}{{{{"{_label(requested)} {parts[0].start}–{parts[-1].end}"}}}}')
            for p in parts:
                if p.route == "refused":
                    refusal = next(
                        (r for r in self.refusals if r.registry == p.registry
                         and (r.start, r.end) in ((p.start, p.end), (None, None))),
                        None,
                    )  # fmt: skip
                    target = f"operator-refuse-{refusal.key}" if refusal else OPERATOR
                    what = f"{p.start}–{p.end}: refused"
                else:
                    target = f"{p.registry}-extract"
                    what = f"{p.start}–{p.end}: {p.registry}, {p.identity_model}, {p.route}"
                out.append(f'  {node} -.->|"{_label(what)}"| {_node(target)}')
        return out


def _carry(t: Transfer) -> str:
    return f"{t.file} ({', '.join(t.columns) if t.columns else 'document, no person data'})"


def _node(ident: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in ident)


def _label(text: str) -> str:
    return text.replace('"', "'")
