"""Typed keys of what create_app puts on the aiohttp Application."""

from __future__ import annotations

import aiohttp
from aiohttp import web
from redis.asyncio import Redis

from services.capture.contact_fetch import ContactFetcher
from services.capture.forms import FormConfig
from services.capture.guard import RateLimiter
from services.capture.ingest import Ingestor
from services.capture.metrics import CaptureMetrics
from services.capture.publisher import Publisher
from services.capture.settings import CaptureSettings
from services.runtime.health import Health
from services.runtime.metrics import CommonMetrics

SETTINGS = web.AppKey("settings", CaptureSettings)
PUBLISHER = web.AppKey("publisher", Publisher)
METRICS = web.AppKey("metrics", CommonMetrics)
CAPTURE_METRICS = web.AppKey("capture_metrics", CaptureMetrics)
HEALTH = web.AppKey("health", Health)
REDIS = web.AppKey("redis", Redis)
INGESTOR = web.AppKey("ingestor", Ingestor)
RATE_LIMITER = web.AppKey("rate_limiter", RateLimiter)
FORMS = web.AppKey("forms", dict[str, FormConfig])
HTTP = web.AppKey("http", aiohttp.ClientSession)
FETCHER = web.AppKey("fetcher", ContactFetcher)
# Capture's plain consumers' lag per (topic, partition), shown as leadpipe_consumer_lag on /metrics.
CONSUMER_LAGS = web.AppKey("consumer_lags", dict[tuple[str, int], int])
