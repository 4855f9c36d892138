"""Which spellings of a repository URL share one cached bare repository. A tenant may
spell its URL 40 ways; each spelling was a repository of its own on disk. Folded are
only what every git host reads the same (scheme and host case, the default port, a
trailing `/` and `.git`); never the path's case, another port or the user: folding
more would serve one repository's cached commits to another's ModelSync."""

from __future__ import annotations

from modelsync.gitops import fetch

EQUAL = [
    ("https://git.example.com/team/models.git", "https://git.example.com/team/models"),
    ("https://git.example.com/team/models", "https://git.example.com/team/models/"),
    ("https://git.example.com/team/models", "https://git.example.com/team/models.git/"),
    ("https://git.example.com/team/models", "HTTPS://git.example.com/team/models"),
    ("https://git.example.com/team/models", "https://GIT.Example.COM/team/models"),
    ("https://git.example.com/team/models", "https://git.example.com:443/team/models"),
    ("http://git.example.com/team/models", "http://git.example.com:80/team/models.git"),
    ("ssh://git@git.example.com/team/models", "ssh://git@git.example.com:22/team/models.git"),
    ("ssh://git@git.example.com/team/models", "SSH://git@GIT.example.com/team/models/"),
    ("git@git.example.com:team/models.git", "git@GIT.EXAMPLE.COM:team/models"),
    ("https://[::1]/team/models", "https://[::1]:443/team/models.git"),
    ("file:///srv/git/models.git", "file:///srv/git/models.git/"),
]

DISTINCT = [
    # The path's case: many hosts (and every file system but a few) tell them apart.
    ("https://git.example.com/team/models", "https://git.example.com/Team/Models"),
    # Another port is another server.
    ("https://git.example.com/team/models", "https://git.example.com:8443/team/models"),
    ("http://git.example.com/team/models", "http://git.example.com:443/team/models"),
    # The user: another account, maybe another view of the host.
    ("https://git.example.com/team/models", "https://alice@git.example.com/team/models"),
    ("https://alice@git.example.com/team/models", "https://Alice@git.example.com/team/models"),
    ("ssh://git@git.example.com/team/models", "ssh://deploy@git.example.com/team/models"),
    # Another scheme, another host spelling (an address is not its name).
    ("http://git.example.com/team/models", "https://git.example.com/team/models"),
    ("https://localhost/team/models", "https://127.0.0.1/team/models"),
    # scp-like paths are relative to the user's home, ssh:// paths are absolute.
    ("git@git.example.com:team/models", "ssh://git@git.example.com/team/models"),
    # A file path and the same path with .git are two directories.
    ("file:///srv/git/models", "file:///srv/git/models.git"),
    # More than one trailing slash or .git is not a spelling any host folds.
    ("https://git.example.com/team/models", "https://git.example.com/team/models.git.git"),
    ("https://git.example.com/team/models", "https://git.example.com/team//models"),
]


def test_security_cache_keys_fold_only_what_every_host_reads_the_same() -> None:
    key = fetch.repo_key
    for one, other in EQUAL:
        assert key(one) == key(other), (one, other)
    for one, other in DISTINCT:
        assert key(one) != key(other), (one, other)
