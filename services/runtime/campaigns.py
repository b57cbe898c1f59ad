"""Campaign spend and the label values metrics may use for channels and campaigns.

`config/campaigns.yaml` lists each paid campaign's cost for its period, so dashboards can divide
spend by the leads the campaign brought (cost per lead). It also bounds metric labels: `channel`
and `utm_campaign` are free text from senders, so only the listed channels and campaigns become
label values; everything else is counted as "other" (and a missing value as "none").
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.runtime.config_file import read_yaml, validate

DEFAULT_CAMPAIGNS_FILE = Path(__file__).resolve().parents[2] / "config" / "campaigns.yaml"
OTHER = "other"
NONE = "none"
_SLUG = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
# Every listed value becomes a label value on several series: keep the lists short.
MAX_CAMPAIGNS = 100
MAX_CHANNELS = 30


def _slug(value: str) -> str:
    value = value.strip().lower()
    if not _SLUG.match(value):
        raise ValueError("use lower-case letters, digits, '.', '_' or '-' (at most 64 characters)")
    if value in (OTHER, NONE):
        raise ValueError(f"{value!r} is reserved for unlisted or missing values")
    return value


Slug = Annotated[str, AfterValidator(_slug)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Period(_Strict):
    """The dates the cost was spent over (inclusive)."""

    start: date
    end: date

    @model_validator(mode="after")
    def _ordered(self) -> Period:
        if self.end < self.start:
            raise ValueError(f"end ({self.end}) is before start ({self.start})")
        return self


class Campaign(_Strict):
    id: Slug = Field(description="The utm_campaign value leads of this campaign carry.")
    channel: Slug = Field(description="The channel the money was spent on (one of `channels`).")
    cost: float = Field(ge=0, allow_inf_nan=False, description="Spend over the period, in `currency`.")
    currency: str = Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code, e.g. EUR.")
    period: Period


class CampaignsConfig(_Strict):
    channels: tuple[Slug, ...] = Field(min_length=1, max_length=MAX_CHANNELS)
    campaigns: tuple[Campaign, ...] = Field(default=(), max_length=MAX_CAMPAIGNS)

    @model_validator(mode="after")
    def _references(self) -> CampaignsConfig:
        if len(set(self.channels)) != len(self.channels):
            raise ValueError("channels must be unique")
        ids = [campaign.id for campaign in self.campaigns]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"campaign ids must be unique: {', '.join(duplicates)} repeated")
        for campaign in self.campaigns:
            if campaign.channel not in self.channels:
                raise ValueError(f"campaign {campaign.id!r}: channel {campaign.channel!r} is not in channels")
        return self

    def channel_label(self, channel: str | None) -> str:
        """A listed channel as itself; anything else as "other"; no channel as "none"."""
        if channel is None or not channel.strip():
            return NONE
        value = channel.strip().lower()
        return value if value in self.channels else OTHER

    def campaign_label(self, campaign: str | None) -> str:
        """A listed campaign id as itself; anything else as "other"; no campaign as "none"."""
        if campaign is None or not campaign.strip():
            return NONE
        value = campaign.strip().lower()
        return value if any(c.id == value for c in self.campaigns) else OTHER


class CampaignsError(ValueError):
    """The campaigns file is missing or invalid; the message names the file, the key and the problem."""


class CampaignsSettings(BaseSettings):
    """Where the campaigns file is; one variable for every service that labels by campaign."""

    model_config = SettingsConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    campaigns_file: Path = Field(DEFAULT_CAMPAIGNS_FILE, alias="LEADPIPE_CAMPAIGNS_FILE")


def parse_campaigns(data: Any, source: str = "<campaigns>") -> CampaignsConfig:
    return validate(CampaignsConfig, data, source, CampaignsError)


def load_campaigns(path: Path | None = None) -> CampaignsConfig:
    """Load the file named by `path`, else by LEADPIPE_CAMPAIGNS_FILE, else config/campaigns.yaml."""
    path = path or CampaignsSettings().campaigns_file
    return parse_campaigns(read_yaml(path, CampaignsError), str(path))
