"""Instances sharing a bucket: leases, membership, backfill day shards, through conditional writes."""
