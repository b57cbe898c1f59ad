"""Per-lead score state, stored as JSON in the `lead-scores` table (changelog-backed)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from schemas.interaction import Source
from schemas.profile import LeadProfile
from schemas.stage import LifecycleStage, Temperature


class BantState(BaseModel):
    """Each criterion: None unknown, True met, False known and not met."""

    model_config = ConfigDict(frozen=True)

    budget: bool | None = None
    authority: bool | None = None
    need: bool | None = None
    timing: bool | None = None


class CapSlot(BaseModel):
    """The earliest scored events of one rule on one UTC day, at most the rule's cap."""

    model_config = ConfigDict(frozen=True)

    times: tuple[float, ...] = ()
    event_ids: tuple[str, ...] = ()


class LeadState(BaseModel):
    """Everything score knows about one lead. Engagement is held decayed to `engagement_at`."""

    model_config = ConfigDict(frozen=True)

    lead_id: str
    profile: LeadProfile | None = None
    source: Source = Field(default_factory=Source)
    engagement_at: float | None = Field(None, description="Epoch seconds of the newest scored event.")
    engagement_by_rule: dict[str, float] = Field(
        default_factory=dict, description="Decayed to engagement_at."
    )
    points_by_rule: dict[str, float] = Field(
        default_factory=dict, description="Undecayed points, for reasons."
    )
    cap_slots: dict[str, CapSlot] = Field(default_factory=dict, description="'rule|YYYY-MM-DD' -> slot.")
    recent_event_ids: tuple[str, ...] = ()
    temperature: Temperature = Temperature.COLD
    lifecycle: LifecycleStage = LifecycleStage.RAW
    hand_raised_at: float | None = None
    recycled_engagement: float = Field(0.0, description="Engagement when recycled, decayed alike.")
    trial: bool = False
    usage: float = 0.0
    bant: BantState = Field(default_factory=BantState)
    evaluated_at: float | None = Field(None, description="Epoch seconds of the latest stage evaluation.")
    next_due: float | None = Field(None, description="Epoch seconds when temperature next drops.")

    @classmethod
    def new(cls, lead_id: str) -> LeadState:
        return cls(lead_id=lead_id)

    def dumps(self) -> bytes:
        """The changelog's JSON. Absent values are left out (`exclude_none`), which loses nothing:
        every field that may be None defaults to None (a unit test walks the model tree). Leaving out
        defaults instead cost pydantic a default instance and a Python `__eq__` per nested model:
        a third of the dump (docs/performance.md, twelfth pass). Bytes straight from the serializer,
        as `services.runtime.codec.encode` writes them."""
        data: bytes = self.__pydantic_serializer__.to_json(self, exclude_none=True)
        return data

    @classmethod
    def loads(cls, raw: bytes | str) -> LeadState:
        return cls.model_validate_json(raw)
