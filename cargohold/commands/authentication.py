"""Who is calling: credentials in, an ``Identity`` out.

Three kinds of credentials, as Quay and the Docker clients use them:

- a user's password (``alice`` / password): checked against the argon2id hash on the
  ``Account`` aggregate (the views never hold password hashes);
- a robot's token (``acme+builder`` / token): checked against the hash in the views;
- an API token (``$token`` / token, or the owner's name / token, or an
  ``Authorization: Bearer`` on /api/v1): looked up by its hash in the views, refused once
  expired; it acts as its owner, capped by its scopes.

Every attempt passes the ``LoginThrottle`` first (per account and per source address);
every failure says only "invalid credentials", whichever part was wrong.

Every attempt is also recorded for the audit log (``AccessRecorder``): ``login_success``
or ``login_failure`` with the credential type (password, robot token, API token) and the
username tried, never the secret; a throttled attempt is a failure with reason
``throttled``.

PERF: a verified password is remembered (keyed by a hash of the stored hash and of the
password, never the password itself) so that clients sending Basic auth on every /v2
request pay argon2 once; a password change makes the stored hash differ, so the memory
never outlives the password.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError

from cargohold.commands.replicas import NoReplicas, Replicas
from cargohold.commands.unit_of_work import EventLog
from cargohold.domain.accounts import Account
from cargohold.domain.authorization import Requester
from cargohold.domain.credentials import LoginThrottle, PasswordHasher, TokenMinter
from cargohold.domain.errors import CredentialsInvalid, InvalidInput, LoginThrottled
from cargohold.domain.identity import (
    AccountName,
    ApiScope,
    Principal,
    PrincipalKind,
    RepositoryRole,
    RobotShortName,
    expand_scopes,
    repository_role_cap,
)
from cargohold.domain.ports import AccessRecord, AccessRecorder, NoAccessRecorder
from cargohold.domain.values import Actor, ActorKind

#: The user names under which a Basic password is an API token (Quay's convention).
TOKEN_USERNAMES = frozenset({"$token", "$oauthtoken", "$app"})


@dataclass(frozen=True)
class Identity:
    """An authenticated caller (or the anonymous one).

    ``scopes`` is ``None`` for a password or robot login (the principal's full rights)
    and the token's scopes for an API token, which cap those rights.
    """

    principal: Principal | None = None
    superuser: bool = False
    scopes: frozenset[ApiScope] | None = None
    token_id: str | None = None

    @property
    def anonymous(self) -> bool:
        return self.principal is None

    @property
    def actor(self) -> Actor:
        if self.principal is None:
            return Actor.anonymous()
        kind = ActorKind.ROBOT if self.principal.kind is PrincipalKind.ROBOT else ActorKind.USER
        return Actor(kind, self.principal.name)

    @property
    def name(self) -> str:
        return "" if self.principal is None else self.principal.name

    def has_scope(self, scope: ApiScope) -> bool:
        """Whether the credentials allow ``scope`` (a password login allows every scope)."""
        return self.scopes is None or scope in expand_scopes(self.scopes)

    @property
    def acts_as_superuser(self) -> bool:
        return self.superuser and self.has_scope(ApiScope.SUPER_USER)

    @property
    def requester(self) -> Requester:
        """The caller for the rule model, superuser only where the scopes allow it."""
        return Requester(self.principal, self.acts_as_superuser)

    def cap(self, role: RepositoryRole | None) -> RepositoryRole | None:
        """``role`` limited by the token's scopes."""
        if role is None or self.scopes is None:
            return role
        limit = repository_role_cap(self.scopes)
        if limit is None:
            return None
        return min(role, limit)


ANONYMOUS = Identity()


class CredentialLookup(Protocol):
    """What authentication reads from the views."""

    def robot_token_hash(self, namespace: str, short_name: str) -> str | None: ...

    def api_token_by_hash(self, token_hash: str) -> ApiTokenLike | None: ...

    def account(self, name: str) -> AccountLike | None: ...


class ApiTokenLike(Protocol):
    @property
    def token_id(self) -> str: ...
    @property
    def owner(self) -> str: ...
    @property
    def scopes(self) -> frozenset[ApiScope]: ...
    @property
    def expires_at(self) -> datetime: ...


class AccountLike(Protocol):
    @property
    def superuser(self) -> bool: ...


class Authenticator:
    def __init__(
        self,
        log: EventLog,
        site_id: UUID,
        hasher: PasswordHasher,
        minter: TokenMinter,
        lookup: CredentialLookup,
        throttle: LoginThrottle,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        remember: int = 4096,
        recorder: AccessRecorder | None = None,
        replicas: Replicas | None = None,
    ) -> None:
        self.replicas: Replicas = replicas or NoReplicas()
        self.log = log
        self.site_id = site_id
        self.hasher = hasher
        self.minter = minter
        self.lookup = lookup
        self.throttle = throttle
        self._now = now
        self._verified: OrderedDict[str, None] = OrderedDict()
        self._remember = remember
        self._lock = threading.Lock()
        self.recorder: AccessRecorder = recorder or NoAccessRecorder()

    def basic(
        self, username: str, secret: str, address: str, request_id: str | None = None
    ) -> Identity:
        """The identity behind HTTP Basic credentials; see the module docstring.

        Raises ``LoginThrottled`` (before checking anything) and ``CredentialsInvalid``.
        Records the attempt (``request_id`` ties it to its request).
        """
        try:
            identity = self._basic(username, secret, address)
        except (CredentialsInvalid, LoginThrottled) as e:
            reason = "throttled" if isinstance(e, LoginThrottled) else "invalid credentials"
            self._record(
                "login_failure", Actor.anonymous(), username, secret, address, request_id, reason
            )
            raise
        self._record("login_success", identity.actor, username, secret, address, request_id)
        return identity

    def _record(
        self,
        kind: str,
        performer: Actor,
        username: str,
        secret: str,
        address: str,
        request_id: str | None,
        reason: str | None = None,
    ) -> None:
        # NOTE: never the secret; only the username tried (cut to a sane length).
        tried = username[:255]
        metadata: dict[str, str] = {"type": self._credential_type(username, secret)}
        metadata["username"] = tried
        if reason is not None:
            metadata["reason"] = reason
        namespace = performer.name.partition("+")[0] if performer.name else None
        if namespace is None and username not in TOKEN_USERNAMES:
            # A failure shows in the logs of the namespace it tried to log in to.
            candidate = tried.partition("+")[0]
            try:
                namespace = str(AccountName(candidate))
            except InvalidInput:
                namespace = None
        self.recorder.record(
            AccessRecord(
                kind=kind,
                at=self._now(),
                performer=performer,
                namespace=namespace,
                ip=address,
                request_id=request_id,
                metadata=metadata,
            )
        )

    def _credential_type(self, username: str, secret: str) -> str:
        if username in TOKEN_USERNAMES or (
            "+" not in username and self.minter.looks_like_token(secret)
        ):
            return "api_token"
        if "+" in username:
            return "robot_token"
        return "password"

    def _basic(self, username: str, secret: str, address: str) -> Identity:
        account_key = username.lower()[:300]
        if username in TOKEN_USERNAMES:
            # NOTE: "$token" is not an account: counting its failures together would let
            # anyone lock every API token out. A token cannot be guessed anyway; the
            # address is what is throttled.
            account_key = f"{username}@{address}"
        wait = self.throttle.check(account_key, address)
        if wait > 0:
            raise LoginThrottled("too many failed logins; try again later", int(wait + 0.999))
        try:
            identity = self._check(username, secret)
        except CredentialsInvalid:
            self.throttle.failed(account_key, address)
            raise
        self.throttle.succeeded(account_key, address)
        return identity

    def bearer_api_token(self, token: str, address: str, request_id: str | None = None) -> Identity:
        """The identity of an API token sent as ``Authorization: Bearer``."""
        return self.basic("$token", token, address, request_id)

    # -- the checks --------------------------------------------------------------------

    def _check(self, username: str, secret: str) -> Identity:
        if not secret:
            raise CredentialsInvalid("invalid credentials")
        if username in TOKEN_USERNAMES:
            return self._api_token(secret, owner=None)
        if "+" in username:
            return self._robot(username, secret)
        if self.minter.looks_like_token(secret):
            # An API token given as the password of its owner (what CI systems do).
            return self._api_token(secret, owner=username)
        return self._password(username, secret)

    def _password(self, username: str, password: str) -> Identity:
        try:
            name = AccountName(username)
            # An account imported from another site has that site's stream id.
            imported = self.replicas.foreign_account(str(name))
            stream = imported or Account.create_id(self.site_id, name)
            account: Account = self.log.repository.get(stream)
        except (InvalidInput, AggregateNotFoundError):
            # NOTE: hash anyway, so an unknown name costs what a wrong password costs.
            self.hasher.verify(password, _DUMMY_HASH.get(self.hasher))
            raise CredentialsInvalid("invalid credentials") from None
        if not self._remembered(account.password_hash, password):
            if not self.hasher.verify(password, account.password_hash):
                raise CredentialsInvalid("invalid credentials")
            self._remember_verified(account.password_hash, password)
        # NOTE: superuser is a power over this installation: one granted at another
        # installation does not carry over with an account imported by bundle (a geo
        # peer's does: the sites are one registry).
        superuser = account.superuser and self.replicas.superuser_here(str(name))
        return Identity(Principal(PrincipalKind.USER, str(name)), superuser=superuser)

    def _robot(self, username: str, token: str) -> Identity:
        namespace, _, short = username.partition("+")
        try:
            principal = Principal.robot(namespace, short)
        except InvalidInput:
            raise CredentialsInvalid("invalid credentials") from None
        stored = self.lookup.robot_token_hash(principal.namespace, str(RobotShortName(short)))
        if stored is None or not self.minter.verify(token, stored):
            raise CredentialsInvalid("invalid credentials")
        return Identity(principal)

    def _api_token(self, token: str, owner: str | None) -> Identity:
        token_hash = self.minter.lookup_hash(token)
        row = None if token_hash is None else self.lookup.api_token_by_hash(token_hash)
        if row is None or row.expires_at <= self._now():
            raise CredentialsInvalid("invalid credentials")
        if owner is not None and owner != row.owner:
            raise CredentialsInvalid("invalid credentials")
        account = self.lookup.account(row.owner)
        if account is None:
            raise CredentialsInvalid("invalid credentials")
        superuser = account.superuser and self.replicas.superuser_here(row.owner)
        return Identity(
            Principal(PrincipalKind.USER, row.owner),
            superuser=superuser,
            scopes=row.scopes,
            token_id=row.token_id,
        )

    # -- the memory of verified passwords ----------------------------------------------

    @staticmethod
    def _key(stored_hash: str, password: str) -> str:
        return _sha256(f"{stored_hash}\0{password}")

    def _remembered(self, stored_hash: str, password: str) -> bool:
        key = self._key(stored_hash, password)
        with self._lock:
            if key in self._verified:
                self._verified.move_to_end(key)
                return True
        return False

    def _remember_verified(self, stored_hash: str, password: str) -> None:
        with self._lock:
            self._verified[self._key(stored_hash, password)] = None
            while len(self._verified) > self._remember:
                self._verified.popitem(last=False)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class _DummyHash:
    """One hash per hasher of a password nobody has, made on first need."""

    def __init__(self) -> None:
        self._hashes: dict[int, str] = {}
        self._lock = threading.Lock()

    def get(self, hasher: PasswordHasher) -> str:
        with self._lock:
            found = self._hashes.get(id(hasher))
            if found is None:
                found = self._hashes[id(hasher)] = hasher.hash("cargohold-no-such-account")
            return found


_DUMMY_HASH = _DummyHash()
