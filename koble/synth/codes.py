"""Code tables with age- and sex-specific weights: ICD-10 (NPR, DÅR, cancer) and ATC.

ICD-10 codes are written in the dotted form throughout (``J18.9``, ``I21.4``, ``Z38.0``);
three-character categories without a subdivision stay undotted (``I10``, ``C61``, ``O80``).
Weights are relative frequencies per age band, tuned to look like Norwegian registry data
(not copied from it). Each row is (code, sex, weights...) where sex is "MF", "M" or "F".
"""

from __future__ import annotations

import dataclasses

import numpy as np
import numpy.typing as npt

__all__ = ["ATC", "CANCER", "DEATH", "NPR", "CodeTable"]


@dataclasses.dataclass(frozen=True)
class CodeTable:
    """Codes with weights per age band (band edges in years) and sex restriction."""

    edges: tuple[float, ...]
    rows: tuple[tuple[str, str, tuple[float, ...]], ...]

    @property
    def codes(self) -> list[str]:
        return [r[0] for r in self.rows]

    def band(self, age: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
        """Age band index of each age."""
        return np.searchsorted(np.array(self.edges), age, side="right").astype(np.int64)

    def sample(
        self, rng: np.random.Generator, age: npt.NDArray[np.float64], male: npt.NDArray[np.bool_]
    ) -> npt.NDArray[np.int64]:
        """Row indices drawn with the weights of each (age band, sex); loops over the few
        band x sex combinations only."""
        band = self.band(age)
        out = np.zeros(len(age), dtype=np.int64)
        u = rng.random(len(age))
        for b in range(len(self.edges) + 1):
            for is_male in (False, True):
                mask = (band == b) & (male == is_male)
                if not mask.any():
                    continue
                sex = "M" if is_male else "F"
                w = np.array([r[2][b] if sex in r[1] else 0.0 for r in self.rows])
                cum = np.cumsum(w)
                pick = np.searchsorted(cum, u[mask] * cum[-1], side="right")
                out[mask] = np.minimum(pick, len(self.rows) - 1)
        return out


_MF, _M, _F = "MF", "M", "F"

#: NPR main diagnoses; bands 0-17, 18-44, 45-66, 67+.
NPR = CodeTable((18, 45, 67), (
    ("J18.9", _MF, (2, 1, 2, 6)), ("J06.9", _MF, (8, 2, 1, 1)), ("J45.9", _MF, (5, 2, 1, 1)),
    ("J44.1", _MF, (0, 0.3, 2, 5)), ("I21.4", _MF, (0, 0.2, 2, 4)), ("I48.9", _MF, (0, 0.3, 2, 6)),
    ("I50.9", _MF, (0, 0.1, 1, 6)), ("I10", _MF, (0, 1, 3, 3)), ("I63.9", _MF, (0, 0.2, 1.5, 4)),
    ("I25.1", _MF, (0, 0.2, 2, 4)), ("I26.9", _MF, (0, 0.3, 0.6, 1)),
    ("I80.2", _MF, (0, 0.4, 0.6, 0.8)), ("E11.9", _MF, (0, 1, 3, 3)),
    ("E10.9", _MF, (2, 1, 0.5, 0.2)), ("E66.9", _MF, (0.5, 1.5, 1.5, 0.5)),
    ("K35.8", _MF, (4, 2, 0.5, 0.2)), ("K80.2", _MF, (0.1, 2, 2, 1.5)),
    ("K21.9", _MF, (0.5, 1, 1.5, 1)), ("K57.3", _MF, (0, 0.3, 1.5, 2)),
    ("K40.9", _M, (1, 1, 1.5, 1.5)), ("N39.0", _MF, (2, 1.5, 1, 3)),
    ("N18.3", _MF, (0, 0.1, 0.8, 2)), ("N20.0", _MF, (0, 1.5, 1.5, 0.8)),
    ("N40", _M, (0, 0, 1, 3)), ("N80.9", _F, (0, 1, 0.3, 0)), ("S72.0", _MF, (0, 0.05, 0.4, 3)),
    ("S52.5", _MF, (3, 1, 1.5, 1.5)), ("S06.0", _MF, (4, 2, 0.8, 1)),
    ("S83.5", _MF, (1, 2, 1, 0.2)), ("M17.1", _MF, (0, 0.3, 3, 3)),
    ("M16.1", _MF, (0, 0.2, 2, 3)), ("M54.5", _MF, (0.3, 3, 3, 2)),
    ("F32.1", _MF, (1, 3, 2, 1)), ("F41.1", _MF, (1, 3, 1.5, 0.5)),
    ("F20.0", _MF, (0, 1, 0.7, 0.3)), ("F10.2", _MF, (0, 1.5, 1.5, 0.8)),
    ("F90.0", _MF, (4, 1.5, 0.3, 0)), ("G40.9", _MF, (2, 1, 1, 1)),
    ("G43.9", _MF, (1, 2, 1, 0.2)), ("G30.9", _MF, (0, 0, 0.2, 2)),
    ("C50.9", _F, (0, 1, 3, 2)), ("C61", _M, (0, 0, 2, 4)), ("C34.9", _MF, (0, 0.1, 1.5, 2.5)),
    ("C18.9", _MF, (0, 0.1, 1, 2)), ("Z51.1", _MF, (0.1, 0.3, 2, 2)),
    ("O80", _F, (0.05, 6, 0.2, 0)), ("O82", _F, (0.01, 1.5, 0.1, 0)),
    ("O20.0", _F, (0.02, 1, 0, 0)), ("H25.9", _MF, (0, 0.1, 1, 4)),
    ("H66.9", _MF, (6, 0.5, 0.3, 0.2)), ("L03.1", _MF, (0.5, 1, 1, 1.5)),
    ("R07.4", _MF, (0.3, 2, 3, 3)), ("R10.4", _MF, (3, 3, 2, 1.5)), ("R55", _MF, (0.5, 1, 1, 2)),
    ("D50.9", _MF, (0.5, 1, 0.7, 1.5)), ("A09.9", _MF, (5, 1, 0.5, 1)),
    ("B34.9", _MF, (5, 1, 0.3, 0.3)), ("Z09.8", _MF, (1, 2, 3, 4)),
))  # fmt: skip

#: Underlying causes of death (DÅR); bands 0-44, 45-66, 67+.
DEATH = CodeTable((45, 67), (
    ("I21.9", _MF, (0.3, 2, 6)), ("I25.1", _MF, (0.2, 2, 8)), ("I64", _MF, (0.1, 1, 6)),
    ("I50.9", _MF, (0, 0.3, 4)), ("C34.9", _MF, (0.2, 4, 5)), ("C18.9", _MF, (0.2, 1.5, 3)),
    ("C50.9", _F, (0.5, 3, 2.5)), ("C61", _M, (0, 1, 4)), ("C25.9", _MF, (0.1, 1.5, 2)),
    ("C71.9", _MF, (1, 1, 0.5)), ("C92.0", _MF, (0.5, 0.5, 0.7)), ("F03", _MF, (0, 0.2, 8)),
    ("G30.9", _MF, (0, 0.2, 4)), ("G12.2", _MF, (0.1, 0.5, 0.4)), ("J44.9", _MF, (0, 1, 5)),
    ("J18.9", _MF, (0.2, 0.5, 4)), ("E14.9", _MF, (0.1, 0.5, 1.5)), ("N18.9", _MF, (0, 0.2, 1)),
    ("K70.3", _MF, (0.5, 1.5, 0.5)), ("X42", _MF, (3, 1, 0.1)), ("X70", _MF, (3, 1, 0.3)),
    ("V89.2", _MF, (2, 0.5, 0.2)), ("W19", _MF, (0.2, 0.3, 3)), ("R99", _MF, (1, 0.5, 0.5)),
    ("Q24.9", _MF, (1, 0, 0)),
))  # fmt: skip

#: Cancer sites (Kreftregisteret) with a typical morphology; bands 0-39, 40-64, 65+.
CANCER = CodeTable((40, 65), (
    ("C50.9", _F, (1, 8, 6)), ("C50.9", _M, (0, 0.05, 0.08)), ("C61", _M, (0, 6, 10)),
    ("C34.9", _MF, (0.2, 3, 5)), ("C18.9", _MF, (0.3, 2.5, 5)), ("C20", _MF, (0.1, 1.5, 2)),
    ("C43.9", _MF, (2, 3, 3)), ("C44.9", _MF, (0.3, 2, 6)), ("C67.9", _M, (0, 1.5, 4)),
    ("C67.9", _F, (0, 0.5, 1.2)), ("C64", _MF, (0.1, 1, 1.5)), ("C25.9", _MF, (0, 0.8, 2)),
    ("C16.9", _MF, (0, 0.5, 1)), ("C73", _MF, (1.5, 1, 0.5)), ("C62.9", _M, (3, 0.5, 0)),
    ("C53.9", _F, (2, 1, 0.5)), ("C54.1", _F, (0.1, 2, 2)), ("C56", _F, (0.2, 1, 1)),
    ("C71.9", _MF, (1, 1, 1)), ("C91.1", _MF, (0, 0.5, 1.5)), ("C92.0", _MF, (0.5, 0.5, 0.8)),
    ("C83.3", _MF, (0.5, 1, 1.5)), ("C81.9", _MF, (1.5, 0.3, 0.2)), ("C90.0", _MF, (0, 0.6, 1.5)),
    ("C22.0", _MF, (0, 0.4, 0.8)), ("C15.9", _MF, (0, 0.4, 0.7)),
))  # fmt: skip
MORPHOLOGY = {
    "C50": "8500/3", "C43": "8720/3", "C44": "8090/3", "C67": "8120/3", "C64": "8312/3",
    "C73": "8260/3", "C62": "9061/3", "C53": "8070/3", "C71": "9440/3", "C91": "9823/3",
    "C92": "9861/3", "C83": "9680/3", "C81": "9650/3", "C90": "9732/3", "C22": "8170/3",
}  # fmt: skip
DEFAULT_MORPHOLOGY = "8140/3"

#: ATC level-5 codes with DDD per dispensed package; bands 0-17, 18-44, 45-66, 67+.
ATC = CodeTable((18, 45, 67), (
    ("N02BE01", _MF, (3, 3, 3, 4)), ("M01AE01", _MF, (2, 4, 3, 1)),
    ("J01CE02", _MF, (4, 2, 1.5, 1.5)), ("J01CA08", _F, (0.5, 2, 1.5, 2.5)),
    ("J01CA08", _M, (0.1, 0.2, 0.4, 1)), ("R06AE07", _MF, (2, 2, 1, 0.5)),
    ("R03AC02", _MF, (2, 1, 1, 1.5)), ("R03AK06", _MF, (0.3, 0.7, 1.5, 2)),
    ("H03AA01", _F, (0.1, 2, 4, 5)), ("H03AA01", _M, (0.05, 0.3, 0.8, 1.5)),
    ("A02BC05", _MF, (0.2, 1.5, 3, 4)), ("A10BA02", _MF, (0, 0.5, 3, 4)),
    ("A10BK01", _MF, (0, 0.1, 1, 1.5)), ("C10AA05", _MF, (0, 0.3, 4, 7)),
    ("C10AA01", _MF, (0, 0.2, 3, 6)), ("C09CA06", _MF, (0, 0.3, 3, 6)),
    ("C08CA01", _MF, (0, 0.2, 2.5, 5)), ("C07AB02", _MF, (0, 0.3, 2, 5)),
    ("B01AC06", _MF, (0, 0.1, 1.5, 5)), ("B01AF02", _MF, (0, 0.1, 0.8, 4)),
    ("N06AB06", _MF, (0.3, 2.5, 2, 1.5)), ("N06AB10", _MF, (0.3, 2.5, 2, 1.5)),
    ("N05CF01", _MF, (0, 1.5, 2, 3)), ("N05BA01", _MF, (0, 1, 1.5, 1.5)),
    ("N02AJ06", _MF, (0.1, 2, 2, 2)), ("N06BA04", _MF, (4, 2, 0.3, 0)),
    ("G03AA07", _F, (0.5, 5, 0.3, 0)), ("G03CA03", _F, (0, 0.2, 2, 1)),
    ("G04CA02", _M, (0, 0.05, 1.5, 4)), ("D07AC01", _MF, (1, 1, 1, 1)),
    ("S01AA01", _MF, (2, 1, 0.5, 0.7)), ("N03AX09", _MF, (0.5, 1, 0.8, 0.5)),
    ("M04AA01", _MF, (0, 0.2, 1, 2)),
))  # fmt: skip
ATC_DDD_PER_PACK = {
    "N02BE01": 10.0, "M01AE01": 20.0, "J01CE02": 10.0, "J01CA08": 5.0, "R06AE07": 30.0,
    "R03AC02": 50.0, "R03AK06": 30.0, "H03AA01": 100.0, "A02BC05": 28.0, "A10BA02": 50.0,
    "A10BK01": 28.0, "C10AA05": 100.0, "C10AA01": 100.0, "C09CA06": 98.0, "C08CA01": 100.0,
    "C07AB02": 100.0, "B01AC06": 100.0, "B01AF02": 60.0, "N06AB06": 30.0, "N06AB10": 28.0,
    "N05CF01": 30.0, "N05BA01": 25.0, "N02AJ06": 10.0, "N06BA04": 30.0, "G03AA07": 84.0,
    "G03CA03": 84.0, "G04CA02": 90.0, "D07AC01": 15.0, "S01AA01": 5.0, "N03AX09": 50.0,
    "M04AA01": 100.0,
}  # fmt: skip
