"""The enrolment bundle: one tar.gz a store box installs (decision 0035).

    S001/store.crt   the store's client certificate (CN = store id)
    S001/store.key   its private key (0600 in the archive; never kept by the cloud)
    S001/ca.crt      the chain's CA, to check the broker
    S001/broker.url  where to connect (mqtts://...)
    S001/README      how to run the agent with these files

The box unpacks it with ``edge_agent.enrolment.install`` (``storefleet edge enrol``).
"""

from __future__ import annotations

import io
import tarfile
import time


def build(*, store_id: str, key_pem: bytes, cert_pem: bytes, ca_pem: bytes,
          broker_url: str) -> bytes:
    readme = (f"storefleet identity of store {store_id}\n\n"
              f"storefleet edge run --store {store_id} --cloud {broker_url} \\\n"
              f"  --cloud-ca ca.crt --cloud-cert store.crt --cloud-key store.key ...\n\n"
              "store.key is this store's private key: keep it on this box only.\n")
    members = [("store.crt", cert_pem, 0o644), ("store.key", key_pem, 0o600),
               ("ca.crt", ca_pem, 0o644), ("broker.url", broker_url.encode() + b"\n", 0o644),
               ("README", readme.encode(), 0o644)]
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, data, mode in members:
            info = tarfile.TarInfo(f"{store_id}/{name}")
            info.size, info.mode, info.mtime = len(data), mode, int(time.time())
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()
