#!/usr/bin/env python3
"""DNS-01 records for lego's `exec` provider (EXEC_PATH), served by pebble-challtestsrv.

lego runs `challtestsrv_txt.py present|cleanup FQDN VALUE`; this adds or removes that TXT value through
challtestsrv's management API (`/set-txt`, `/clear-txt`). Settings come from the environment Traefik passes on
(its rendered traefik.env): CHALLTESTSRV_URL (the management API) and CHALLTESTSRV_RECORDS (a JSON file).

Several gateway hosts validate the same names at once, each its own value. A real DNS provider removes one
value of a record set; `/clear-txt` removes them all, which would take another host's value away between its
`present` and the CA's lookup. So the values are counted in CHALLTESTSRV_RECORDS (shared by the hosts, under a
lock, as the provider's record set is) and a name is cleared only when no host needs it any more. Standard
library only: lego runs it with the system's python3.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import urllib.request


def management(path: str, body: dict[str, str]) -> None:
    request = urllib.request.Request(
        os.environ["CHALLTESTSRV_URL"].rstrip("/") + path,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] not in ("present", "cleanup"):
        print("usage: challtestsrv_txt.py present|cleanup FQDN VALUE", file=sys.stderr)
        return 2
    action, fqdn, value = argv
    with open(os.environ["CHALLTESTSRV_RECORDS"], "a+", encoding="utf-8") as records:
        fcntl.flock(records, fcntl.LOCK_EX)
        records.seek(0)
        needed: dict[str, list[str]] = json.loads(records.read() or "{}")
        values = needed.setdefault(fqdn, [])
        if action == "present":
            management("/set-txt", {"host": fqdn, "value": value})
            values.append(value)
        else:
            if value in values:
                values.remove(value)
            if not values:
                management("/clear-txt", {"host": fqdn})
                del needed[fqdn]
        records.seek(0)
        records.truncate()
        records.write(json.dumps(needed))
    print(f"{action} {fqdn}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
