"""The demo's encrypted run (``storage.encryption``): its configuration, and its tour: verified with
``--decrypt``, one call erased by destroying its key, verified again."""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

import yaml

from archiver.audit.catalog import Catalog
from archiver.audit.encrypted import KeyChecker
from archiver.audit.plaintext import Decrypter
from archiver.audit.verify import Verifier
from archiver.compose.stores import make_key_store, make_store
from archiver.config.identity import identities
from archiver.config.load import parse_config
from archiver.config.models import Config
from archiver.core.clock import SystemClock
from archiver.core.encryption import Identity, public
from archiver.lifecycle.erase import Eraser


def encrypted_config(directory: Path, raw: dict[str, object]) -> Config:
    """The same source, archived encrypted: a fresh age identity (the archive's, kept in the demo's
    folder, mode 0600), its recipient the one the keys are wrapped to, the keys in a folder apart."""
    identity = Identity.generate()
    path = directory / "age-identity"
    path.unlink(missing_ok=True)
    path.touch(mode=0o600)
    path.write_text(f"# the demo archive's identity\n# public key: {public(identity)}\n{identity}\n", encoding="utf-8")
    sealed = dict(raw)
    sealed["storage"] = {
        "url": f"file://{directory / 'archive-encrypted'}",
        "encryption": {
            "age_recipients": [public(identity)],
            "keys_url": f"file://{directory / 'keys'}",
            "identity_file": str(path),
        },
    }
    sealed["state"] = {"path": str(directory / "ledger-encrypted.sqlite3")}
    (directory / "config-encrypted.yaml").write_text(
        "# The demo's encrypted run: storage.encryption (see README, Recordings encrypted before they leave the host)\n"
        + yaml.safe_dump(sealed, sort_keys=False, allow_unicode=True),
        encoding="utf-8",
    )
    return parse_config(sealed, environ={})


async def encrypted_tour(config: Config, directory: Path, out: TextIO) -> bool:
    """What the encrypted archive holds, verified with --decrypt; one call erased by destroying its
    key (crypto-shredding); verified again: the call erased, its recording still there, intact."""
    clock = SystemClock()
    tz, prefix = config.source.tz, config.storage.prefix
    store, keys = make_store(config), make_key_store(config)
    assert keys is not None
    try:
        reader = Decrypter(keys, identities(config, why="for the demo"))
        checker = KeyChecker(store, keys, decrypter=reader)
        audit = await Verifier(store, prefix, clock=clock, keys=checker).verify(None, deep=True)
        recorded = [
            f.entry
            for d in await Catalog(store, prefix, tz).days()
            for f in await Catalog(store, prefix, tz).day_calls(d)
        ]
        call = next(e for e in recorded if e.recording_status == "archived")
        erased = await Eraser(store, prefix, tz=tz, clock=clock, keys=keys).erase(
            call.call_id, "demo: a data subject's request, ref. DSR-0002", bypass_governance=False, dry_run=False
        )
        after = await Verifier(store, prefix, clock=clock, keys=KeyChecker(store, keys, decrypter=reader)).verify(None)
    finally:
        await store.aclose()
        await keys.aclose()
    config_file = directory / "config-encrypted.yaml"
    sample = str(call.recording_key)
    key_object = next((directory / "keys").rglob(f"{call.call_id}.*.age"), None)
    print(f"\nencrypted (storage.encryption; {config_file}):", file=out)
    print(
        f"  {audit.encrypted} recordings are age files in {directory / 'archive-encrypted'}, each to a key of its own; "
        f"the keys, wrapped to {directory / 'age-identity'}'s recipient, are in {directory / 'keys'}",
        file=out,
    )
    print(f"  archiver verify -c {config_file} --decrypt", file=out)
    print(
        f"    {len(audit.problems)} problem(s); {audit.decrypted} recordings decrypted, each the audio its record "
        "states",
        file=out,
    )
    print(f"  archiver erase -c {config_file} {call.call_id} --reason '…'", file=out)
    print(
        f"    its key destroyed ({erased.key_versions_removed} objects), its recording {sample} left as it was: "
        "unreadable now (crypto-shredding; works under any Object Lock)",
        file=out,
    )
    print(
        f"    verify: {len(after.problems)} problem(s); {after.crypto_shredded} call(s) erased by destroying their "
        "keys",
        file=out,
    )
    print(
        f"  by hand, any other recording (Debian's age): age -d -i {directory / 'age-identity'} -o call.key "
        "KEY_OBJECT; age -d -i call.key -o call.wav RECORDING",
        file=out,
    )
    return (
        not audit.problems
        and audit.decrypted == audit.encrypted > 0
        and not after.problems
        and after.crypto_shredded == 1
        and key_object is None
    )
