"""Before ``run`` or ``backfill`` writes anything: does the store keep the archive's one guarantee?

A store that ignores ``If-None-Match`` turns every create-only write into last-writer-wins,
silently. Unless the configuration chose ``storage.create_only: look_before_write`` (a weaker,
documented mode), the archiver refuses to start on such a store.
"""

from __future__ import annotations

import uuid

import structlog

from archiver.compose import Parts
from archiver.errors import StoreAccessError, TransientError
from archiver.store.probe import compare_and_swap_fault, refuses_second_create
from archiver.store.s3 import S3Store

log = structlog.get_logger("archiver.service")

NOT_ENFORCED = (
    "{where} accepted a second create-only write of the same key: it ignores {header}, so the archive "
    "would silently become last-writer-wins. Use a store that honours conditional writes, or set "
    "storage.create_only: look_before_write (each write looks first; see config.example.yaml for the race left)"
)


NO_SWAP = (
    "{where} {fault}: instances coordinate through conditional writes (leases, day claims), so "
    "coordination cannot work there. Put control objects in a bucket where they work "
    "(coordination.bucket: an unversioned bucket on the same server), or run a single instance "
    "with coordination.enabled: false"
)


async def ensure_create_only(parts: Parts, *, let_through_unanswered: bool = True) -> bool:
    """Raise StoreAccessError when the store does not refuse a second create-only write and the
    config did not choose the weaker mode, or when control objects cannot be swapped on their
    ETag (whatever the mode: coordination rests on it).

    True when the store proved it; False when the weaker mode is chosen, or when the store did
    not answer now (let through with a warning: every write still carries its condition), unless
    *let_through_unanswered* is False: then the TransientError is raised, saying what happened.
    """
    config = parts.config
    key = f"{config.control_prefix}/check/{uuid.uuid4()}"
    # The probe's throwaway objects get no retention or legal hold (each start would leave one
    # locked): on S3, a plain store over the archive's own bucket and client.
    store = S3Store(parts.store.s3) if isinstance(parts.store, S3Store) else parts.store
    looking = config.storage.create_only == "look_before_write"
    problems = []  # each one, so that a person fixes them all at once
    try:
        if not looking and not await refuses_second_create(store, key + ".txt"):
            problems.append(NOT_ENFORCED.format(where=store.description, header="If-None-Match"))
        if parts.control is not None:
            fault = await compare_and_swap_fault(parts.control, key + ".json")
            if fault is not None:
                problems.append(NO_SWAP.format(where=parts.control.description, fault=fault))
        if problems:
            raise StoreAccessError(". Also: ".join(problems))
        if looking:
            log.warning("store.create_only_by_looking", store=store.description)
            return False
    except TransientError as exc:
        if not let_through_unanswered:
            raise
        log.warning("store.probe_unanswered", store=store.description, error=str(exc))
        return False
    log.info("store.create_only_proved", store=store.description)
    return True
