"""Reference line: Quix Streams (librdkafka via confluent-kafka), plain `apply` + `to_topic`.

Needs the `quix` extra, best in its own venv (see pyproject.toml); the case reports itself unavailable
otherwise.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from bench.case import BenchContext, CaseResult, register
from bench.measure import measure_passthrough


@dataclass(frozen=True)
class QuixPassthrough:
    name: str = "quix.apply"
    description: str = "Quix Streams `apply` + `to_topic`"

    def unavailable(self) -> str | None:
        if importlib.util.find_spec("quixstreams") is None:
            return "quixstreams is not installed (pip install -e '.[bench,quix]' in a separate venv)"
        return None

    async def run(self, ctx: BenchContext) -> CaseResult:
        result = await measure_passthrough(
            ctx, case=self.name, description=self.description, module="bench.workers.quix"
        )
        from importlib.metadata import version

        result.extra["quixstreams"] = version("quixstreams")
        return result


register(QuixPassthrough())
