"""Release identity.  BUILD_DATE is the clock-trust floor: no clock before it can be right."""

from datetime import UTC, datetime

VERSION = "0.1.0"
BUILD_DATE = datetime(2026, 11, 26, tzinfo=UTC)
