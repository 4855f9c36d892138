"""The storage initializer of model pods: download one model into the directory the
server reads, then exit.

modelsync renders it as an init container with `args: [URI, /mnt/models]`; the
`kserve-storage` package does the download (s3://, gs://, https://, ...) and has
no command of its own. Credentials come from the environment, as that package
reads them (the keys of the ModelDeployment's storageSecretRef Secret):
AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL, AWS_DEFAULT_REGION,
S3_VERIFY_SSL for s3://; GOOGLE_APPLICATION_CREDENTIALS for gs://.

A failure exits 1 and leaves one line, naming the URI and what the store said, in
the container's termination message, where the operator and `kubectl describe` read it.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

TERMINATION_LOG = Path("/dev/termination-log")


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(f"usage: {Path(argv[0]).name} URI OUT_DIR", file=sys.stderr)
        return 2
    uri, out_dir = argv[1], argv[2]
    from kserve_storage import Storage  # its imports take a second: after the usage check

    try:
        Storage.download(uri, out_dir)
    except Exception as error:  # any failure ends the pod's start, with its message
        message = f"storage-initializer: {uri}: {type(error).__name__}: {error}"
        print(message, file=sys.stderr)
        # The kubelet mounts it in every container; elsewhere stderr has it.
        if TERMINATION_LOG.is_file():
            with contextlib.suppress(OSError):
                TERMINATION_LOG.write_text(message[:4000])
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
