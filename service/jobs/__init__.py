"""Background jobs: most run in one process at a time, however many processes serve; a job
that coordinates its own work runs in every process."""

from service.jobs.every_process import run_in_every_process
from service.jobs.leases import JobLeases, LeaseHolder, lease_for
from service.jobs.single_active import run_single_active
from service.jobs.subscriptions import LOG_SUBSCRIPTIONS

__all__ = [
    "LOG_SUBSCRIPTIONS",
    "JobLeases",
    "LeaseHolder",
    "lease_for",
    "run_in_every_process",
    "run_single_active",
]
