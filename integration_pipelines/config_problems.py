"""Configuration a deployment got wrong, kept from taking the whole code location down.

Why: a bad `IP_NIGHTLY_CRON` or a non-number in `IP_RECONCILIATION_WARN_AT` used to fail the code location's load
with a Dagster or pydantic traceback: every asset, sensor and alert disappeared from the UI, and no alert channel
heard of it. Now what depends only on the bad value is left out (a schedule with an invalid cron or timezone), a
setting everything reads (`Settings`) leaves only this report, and in both cases the sensor `configuration_problems`
shows one readable paragraph per problem, naming the variable to fix, in the UI and sends it once to the alert
channels (IP_ALERT_*).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
from pydantic import ValidationError

from .connectors.redaction import redact

SENSOR_NAME = "configuration_problems"
_SECRET_WORDS = ("secret", "token", "password", "key")


@dataclass(frozen=True)
class ConfigProblem:
    """One value the deployment must fix: the variable (or file) and what is wrong with it."""

    variable: str
    message: str

    def text(self) -> str:
        return redact(f"{self.variable}: {self.message}")


class ConfigurationProblemError(Exception):
    """Raised by the `configuration_problems` sensor so its tick shows the problems in the UI."""


def settings_problems(error: ValidationError, env_prefix: str = "IP_") -> list[ConfigProblem]:
    """The settings a pydantic validation refused, by environment variable. The refused value is repeated only
    for names that cannot hold a secret."""
    problems = []
    for item in error.errors():
        field = str(item["loc"][0]) if item.get("loc") else ""
        variable = f"{env_prefix}{field.upper()}" if field else f"{env_prefix}* (.env)"
        shown = "" if any(word in field for word in _SECRET_WORDS) else f" (got {item.get('input')!r})"
        problems.append(ConfigProblem(variable, f"{item['msg']}{shown}; the code location loaded without the "
                                                "pipelines until it is fixed"))
    return problems


def schedule_or_problem(build: Callable[[], dg.ScheduleDefinition], variables: str
                        ) -> dg.ScheduleDefinition | ConfigProblem:
    """The schedule, or the problem that keeps it out (an invalid cron or timezone): only that schedule is left out,
    everything else loads."""
    try:
        return build()
    except dg.DagsterInvalidDefinitionError as exc:
        return ConfigProblem(variables, f"{exc}; this schedule is not loaded until it is fixed, everything else is")


def _incident(problems: list[ConfigProblem]) -> str:
    return "config:" + hashlib.sha256("\n".join(p.text() for p in problems).encode()).hexdigest()[:16]


def build_problems_sensor(problems: list[ConfigProblem], data_dir: Path | None = None) -> dg.SensorDefinition:
    """A running sensor whose every tick fails with the problems (the UI shows it red on the Automation page) and
    which sends them to the alert channels once per distinct set of problems."""
    report = "Configuration problems:\n" + "\n".join(f"- {p.text()}" for p in problems)

    @dg.sensor(name=SENSOR_NAME, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING,
               description="Fails while a setting is wrong, naming the variable to fix; alerts once.")
    def configuration_problems(context: dg.SensorEvaluationContext) -> dg.SkipReason:
        from .alerts import Alert, Alerter
        from .settings import Settings

        folder = data_dir or Path(os.environ.get("IP_DATA_DIR") or ".data")
        try:
            alerter = Alerter(Settings.model_construct(data_dir=folder))  # the settings may be what is broken
        except ValidationError as exc:  # the alert channels' own settings are wrong too
            raise ConfigurationProblemError(report + "\n" + "\n".join(
                f"- {p.text()}" for p in settings_problems(exc, "IP_ALERT_"))) from None
        alerter.raise_alert(Alert(incident=_incident(problems), title="configuration problem",
                                  summary=report, url=f"{alerter.config.ui_base_url}/automation"))
        raise ConfigurationProblemError(report)

    return configuration_problems
