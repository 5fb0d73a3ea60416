"""Background jobs that must run in one process at a time, however many processes serve."""

from service.jobs.leases import JobLeases, LeaseHolder, lease_for
from service.jobs.single_active import run_single_active

__all__ = ["JobLeases", "LeaseHolder", "lease_for", "run_single_active"]
