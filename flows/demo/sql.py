"""SQL building blocks of the generator: seeded pseudo-random draws and choices from lists.

Randomness is a pure function of ``(seed, key, salt)`` (DuckDB's ``hash``), never ``random()``:
every value is the same whichever thread computes it, so the same seed gives the same files.
Each draw uses its own salt, so draws about the same row are independent of each other.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import duckdb


@dataclass(frozen=True)
class IdFormat:
    """Keys like ``WF-04210042``: a prefix and ``width`` digits numbering the rows.

    Row index ``i`` gets the number ``(i * stride + 1) mod 10**width``. With a stride of 1 the
    numbers count up; any stride coprime to 10 shuffles them (no sort needed) and still gives
    every index below ``10**width`` its own number.
    """

    prefix: str
    width: int
    stride: int = 1

    def __post_init__(self) -> None:
        if self.stride % 2 == 0 or self.stride % 5 == 0:
            raise ValueError(f"stride {self.stride} shares a factor with 10: ids would repeat")

    def of(self, index: str) -> str:
        """The key for row index ``index``, a SQL integer expression below ``capacity``."""
        number = f"(({index}) * {self.stride} + 1) % {self.capacity}"
        return f"{literal(self.prefix)} || lpad(({number})::varchar, {self.width}, '0')"

    def format(self, index: int) -> str:
        """The key for row index ``index``, as ``of`` computes it in SQL."""
        return f"{self.prefix}{(index * self.stride + 1) % self.capacity:0{self.width}d}"

    @property
    def capacity(self) -> int:
        return 10**self.width


def literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def string_list(values: Sequence[str]) -> str:
    return "[" + ", ".join(literal(value) for value in values) + "]"


def choice(options: Sequence[str], draw: str) -> str:
    """An expression picking one of ``options`` uniformly by ``draw`` (an expression in [0, 1))."""
    return f"{string_list(options)}[1 + floor(({draw}) * {len(options)})::bigint]"


def weighted_choice(weights: Mapping[str, float], draw: str) -> str:
    """An expression picking a key of ``weights`` with probability proportional to its weight."""
    total = sum(weights.values())
    branches: list[str] = []
    cumulative = 0.0
    for value, weight in list(weights.items())[:-1]:
        cumulative += weight
        branches.append(f"when ({draw}) < {cumulative / total!r} then {literal(value)}")
    last = literal(list(weights)[-1])
    return f"case {' '.join(branches)} else {last} end"


def choice_by(key: str, options_by_key: Mapping[str, Sequence[str]], draw: str) -> str:
    """An expression picking uniformly from the options listed for the value of ``key``."""
    branches = " ".join(
        f"when {literal(value)} then {choice(options, draw)}"
        for value, options in options_by_key.items()
    )
    return f"case {key} {branches} end"


def lookup(key: str, mapping: Mapping[str, str]) -> str:
    """An expression mapping the value of ``key`` through ``mapping`` (null when absent)."""
    branches = " ".join(f"when {literal(k)} then {literal(v)}" for k, v in mapping.items())
    return f"case {key} {branches} end"


def install_macros(connection: duckdb.DuckDBPyConnection, *, seed: int, as_of: datetime) -> None:
    """Define the draws every generator query uses, bound to this seed and clock.

    ``draw(key, salt)`` is uniform in [0, 1): the top 53 bits of the hash, as a double. DuckDB
    combines the hashes of several arguments weakly (draws with salts ``'a'`` and ``'b'`` would
    correlate at 0.9), so the combined hash is hashed once more.
    ``gauss(key, salt)`` is standard normal (Box-Muller over two draws).
    ``before_as_of(seconds)`` is the timestamp that many seconds before ``as_of``.
    """
    statements = (
        f"""create macro draw(key, salt) as
            (hash(hash({int(seed)}::bigint, key, salt)) >> 11)::double / 9007199254740992.0""",
        """create macro gauss(key, salt) as
            sqrt(-2 * ln(1 - draw(key, salt || '/radius')))
            * cos(2 * pi() * draw(key, salt || '/angle'))""",
        "create macro sigmoid(x) as 1 / (1 + exp(-(x)))",
        f"create macro as_of() as timestamp '{as_of.isoformat(sep=' ')}'",
        "create macro before_as_of(seconds) as as_of() - to_seconds((seconds)::bigint)",
        "create macro iso_t(ts) as strftime(ts, '%Y-%m-%dT%H:%M:%S')",
        "create macro iso_space(ts) as strftime(ts, '%Y-%m-%d %H:%M:%S')",
    )
    for statement in statements:
        connection.execute(statement)
