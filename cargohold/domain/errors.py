"""Domain errors: one tree, mapped once per API surface.

::

    DomainError
    ├── InvalidInput                 bad input, rejected before any event exists
    │   ├── NameInvalid          name breaks the OCI grammar          (NAME_INVALID)
    │   ├── TagInvalid           tag breaks the OCI grammar           (MANIFEST_INVALID)
    │   ├── ReferenceInvalid     neither a tag nor a digest           (MANIFEST_INVALID)
    │   ├── DigestInvalid        malformed, or content mismatch       (DIGEST_INVALID)
    │   ├── DigestUnsupported    well-formed, algorithm we lack       (UNSUPPORTED)
    │   ├── MediaTypeInvalid     not an RFC 6838 media type           (MANIFEST_INVALID)
    │   ├── ManifestInvalid      manifest body fails validation       (MANIFEST_INVALID)
    │   ├── ManifestBlobUnknown  manifest refers to an unlinked blob  (MANIFEST_BLOB_UNKNOWN)
    │   ├── SizeInvalid          length differs from the claim        (SIZE_INVALID)
    │   ├── RangeInvalid         an offset or range we cannot serve   (416)
    │   ├── AccountNameInvalid   user/org name breaks Quay's grammar  (400)
    │   ├── TeamNameInvalid      team name breaks Quay's grammar      (400)
    │   ├── RobotNameInvalid     robot short name breaks the grammar  (400)
    │   ├── EmailInvalid         not an e-mail address                (400)
    │   ├── CredentialInvalid    an empty password or token hash      (400)
    │   ├── ScopeInvalid         an API token scope we do not know    (400)
    │   └── PermissionInvalid    a grant Quay refuses (owner, foreign team/robot)  (400)
    ├── NotFound
    │   ├── RepositoryUnknown                                         (NAME_UNKNOWN)
    │   ├── ManifestUnknown                                           (MANIFEST_UNKNOWN)
    │   ├── TagUnknown                                                (MANIFEST_UNKNOWN)
    │   ├── BlobUnknown                                               (BLOB_UNKNOWN)
    │   ├── UploadUnknown                                             (BLOB_UPLOAD_UNKNOWN)
    │   ├── AccountUnknown       no such user
    │   ├── OrganizationUnknown  no such organisation
    │   ├── TeamUnknown          no such team in the organisation
    │   ├── MemberUnknown        the user is not a member (of the org or the team)
    │   ├── RobotUnknown         no such robot in the namespace
    │   ├── ApiTokenUnknown      no such API token of the account
    │   ├── PermissionUnknown    the principal holds no grant on the repository
    │   └── DefaultPermissionUnknown  no default permission for the principal
    ├── Conflict
    │   ├── ConcurrentModification  another writer won; retry the command
    │   ├── NameTaken            a user or organisation already has this name
    │   ├── RepositoryExists     creating a repository that is there
    │   ├── TeamExists           the organisation already has this team
    │   ├── RobotExists          the namespace already has this robot
    │   ├── OwnersTeamProtected  the owners team cannot go, change role or lose its last member
    │   └── RobotInUse           a robot a repository mirror writes as cannot go
    ├── CredentialsInvalid          wrong user, password or token at login       (401 UNAUTHORIZED)
    ├── AuthenticationRequired      anonymous, and the action needs an identity  (401 UNAUTHORIZED)
    ├── AccessDenied                known caller, not allowed                    (403 DENIED)
    │   └── ReplicatedReadOnly   the name is replicated from another site and managed there
    ├── LoginThrottled              too many failed logins; wait                 (429)
    ├── UpstreamThrottled           a cache's upstream rate-limits, nothing cached (429)
    ├── TokenInvalid                bearer JWT forged, expired or for another aud (401 UNAUTHORIZED)
    ├── ReadOnly                    a write to the registry as of a moment       (405 UNSUPPORTED)
    └── StorageError                a backing store failed (not the caller's fault)
        └── UpstreamUnreachable  a cache's upstream failed and nothing is cached (503)

``CredentialsInvalid`` (a login that failed) is not ``CredentialInvalid`` (an empty
password or hash offered to a command, a 400).

Adapters translate foreign exceptions (psycopg, minio, OSError) into these at one choke
point each, re-raising ``from`` the original.
"""

from __future__ import annotations


class DomainError(Exception):
    """Base of every error cargohold raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(DomainError):
    """The caller sent something that breaks a grammar or a rule."""


class NameInvalid(InvalidInput):
    pass


class TagInvalid(InvalidInput):
    pass


class ReferenceInvalid(InvalidInput):
    pass


class DigestInvalid(InvalidInput):
    pass


class DigestUnsupported(InvalidInput):
    pass


class MediaTypeInvalid(InvalidInput):
    pass


class ManifestInvalid(InvalidInput):
    pass


class ManifestBlobUnknown(InvalidInput):
    pass


class SizeInvalid(InvalidInput):
    pass


class RangeInvalid(InvalidInput):
    pass


class NotFound(DomainError):
    pass


class RepositoryUnknown(NotFound):
    pass


class ManifestUnknown(NotFound):
    pass


class TagUnknown(NotFound):
    pass


class BlobUnknown(NotFound):
    pass


class UploadUnknown(NotFound):
    pass


class Conflict(DomainError):
    pass


class ConcurrentModification(Conflict):
    pass


class AccountNameInvalid(InvalidInput):
    pass


class TeamNameInvalid(InvalidInput):
    pass


class RobotNameInvalid(InvalidInput):
    pass


class EmailInvalid(InvalidInput):
    pass


class CredentialInvalid(InvalidInput):
    pass


class ScopeInvalid(InvalidInput):
    pass


class PermissionInvalid(InvalidInput):
    pass


class ApiTokenUnknown(NotFound):
    pass


class AccountUnknown(NotFound):
    pass


class OrganizationUnknown(NotFound):
    pass


class TeamUnknown(NotFound):
    pass


class MemberUnknown(NotFound):
    pass


class RobotUnknown(NotFound):
    pass


class PermissionUnknown(NotFound):
    pass


class DefaultPermissionUnknown(NotFound):
    pass


class NameTaken(Conflict):
    pass


class RepositoryExists(Conflict):
    pass


class TeamExists(Conflict):
    pass


class RobotExists(Conflict):
    pass


class OwnersTeamProtected(Conflict):
    pass


class RobotInUse(Conflict):
    """The robot is the one a repository mirror writes as (Quay: 400 "Robot is being used
    by a mirror")."""


class CredentialsInvalid(DomainError):
    """A login failed: unknown account, wrong password or wrong token (never says which)."""


class AuthenticationRequired(DomainError):
    pass


class AccessDenied(DomainError):
    pass


class ReplicatedReadOnly(AccessDenied):
    """The repository or namespace came from another site (an imported bundle): it is
    read-only here, like a mirror, because only its origin site writes its streams."""


class LoginThrottled(DomainError):
    """``retry_after`` is in whole seconds (at least 1)."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = max(1, retry_after)


class UpstreamThrottled(DomainError):
    """A pull-through cache lacks what was asked and its upstream rate-limits;
    ``retry_after`` is the upstream's wait in whole seconds, if it named one."""

    def __init__(self, message: str, retry_after: int | None) -> None:
        super().__init__(message)
        self.retry_after = None if retry_after is None else max(1, retry_after)


class TokenInvalid(DomainError):
    """A bearer token is malformed, forged, expired, not yet valid, or for another audience."""


class ReadOnly(DomainError):
    """A write sent to a registry that serves its past (``serve --as-of``)."""


class StorageError(DomainError):
    """A backing store (database, object store, disk) failed."""


class UpstreamUnreachable(StorageError):
    """A pull-through cache lacks what was asked and its upstream is unreachable,
    answers 5xx, or broke off mid-transfer."""
