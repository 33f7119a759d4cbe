"""The Quay-shaped REST API under ``/api/v1`` (QUAY-API.md sections 0-7 and 10-12, and
Quay's proxy-cache configuration).

Modules: ``router`` (the sink, routing, identification), ``errors`` (the one error
table), ``guard`` (who may do what), ``request`` (bodies, queries, page tokens),
``views`` (dates, avatars, shared objects), and one module per resource family.

Routes (a trailing ``/`` is optional everywhere; ``{namespace}/{repo}`` is a repository):

==========================================================  ==================  ===========
path                                                        methods             module
==========================================================  ==================  ===========
/error/{error_type}                                         GET                 errors
/user/                                                      GET PUT             users
/users/{username}                                           GET                 users
/superuser/users/                                           GET POST            users
/superuser/users/{username}                                 GET PUT             users
/user/apptoken                                              GET POST            tokens
/user/apptoken/{token_id}                                   GET DELETE          tokens
/organization/                                              POST                organizations
/organization/{org}                                         GET PUT             organizations
/organization/{org}/members                                 GET                 organizations
/organization/{org}/members/{member}                        GET DELETE          organizations
/organization/{org}/team/{team}                             PUT DELETE          teams
/organization/{org}/team/{team}/members                     GET                 teams
/organization/{org}/team/{team}/members/{member}            PUT DELETE          teams
/organization/{org}/team/{team}/permissions                 GET                 teams
/organization/{org}/robots                                  GET                 robots
/organization/{org}/robots/{short}                          PUT GET DELETE      robots
/organization/{org}/robots/{short}/regenerate               POST                robots
/organization/{org}/robots/{short}/permissions              GET                 robots
/organization/{org}/prototypes                              GET POST            prototypes
/organization/{org}/prototypes/{proto_id}                   PUT DELETE          prototypes
/organization/{org}/proxycache                              GET POST DELETE     proxy_caches
/organization/{org}/validateproxycache                      POST                proxy_caches
/repository                                                 GET POST            repositories
/repository/{namespace}/{repo}                              GET DELETE          repositories
/repository/{namespace}/{repo}/changevisibility             POST                repositories
/repository/{namespace}/{repo}/permissions/user/            GET                 permissions
/repository/{namespace}/{repo}/permissions/user/{username}  GET PUT DELETE      permissions
/repository/{ns}/{repo}/permissions/user/{username}/transitive  GET             permissions
/repository/{namespace}/{repo}/permissions/team/            GET                 permissions
/repository/{namespace}/{repo}/permissions/team/{team}      GET PUT DELETE      permissions
/repository/{namespace}/{repo}/tag/                         GET                 tags
/repository/{namespace}/{repo}/tag/{tag}                    PUT DELETE          tags
/repository/{namespace}/{repo}/tag/{tag}/restore            POST                tags
/repository/{namespace}/{repo}/mirror                       GET POST PUT        mirrors
/repository/{namespace}/{repo}/mirror/sync-now              POST                mirrors
/repository/{namespace}/{repo}/mirror/sync-cancel           POST                mirrors
/repository/{namespace}/{repo}/changestate                  PUT                 mirrors
/repository/{namespace}/{repo}/logs (also aggregatelogs)    GET                 logs
/repository/{namespace}/{repo}/exportlogs                   GET POST            logs
/organization/{org}/logs, aggregatelogs, exportlogs         GET (export: POST)  logs
/user/logs, aggregatelogs, exportlogs                       GET (export: POST)  logs
/superuser/logs, aggregatelogs, exportlogs                  GET (export: POST)  logs
/superuser/sites                                            GET                 sites
==========================================================  ==================  ===========
"""

from __future__ import annotations

import falcon

from cargohold.commands.authentication import Authenticator
from cargohold.commands.identity import IdentityService
from cargohold.commands.mirrors import MirrorService
from cargohold.commands.proxy_caches import ProxyCacheService
from cargohold.commands.registry import RegistryService
from cargohold.commands.tag_windows import TagWindows
from cargohold.http.api_v1 import (
    logs,
    mirrors,
    organizations,
    permissions,
    prototypes,
    proxy_caches,
    repositories,
    robots,
    sites,
    tags,
    teams,
    tokens,
    users,
)
from cargohold.http.api_v1.errors import ErrorDescriptionResource
from cargohold.http.api_v1.guard import Guard
from cargohold.http.api_v1.router import SINK_PATTERN, ApiV1Router
from cargohold.projections.audit.queries import AuditQueries
from cargohold.projections.identity_queries import IdentityQueries
from cargohold.projections.proxy_caches import ProxyCacheQueries
from cargohold.projections.queries import RegistryQueries

__all__ = ["build_router", "register"]

_REPO = "/repository/{namespace}/{repo}"


def build_router(
    *,
    authenticator: Authenticator,
    authorization: IdentityQueries,
    identity_queries: IdentityQueries,
    queries: RegistryQueries,
    audit_queries: AuditQueries,
    identity: IdentityService,
    registry: RegistryService,
    mirror_service: MirrorService,
    proxy_cache_service: ProxyCacheService,
    proxy_cache_queries: ProxyCacheQueries,
    tag_windows: TagWindows,
    site_status: sites.Sites,
    read_only: str | None,
) -> ApiV1Router:
    """Every /api/v1 route, wired to its resource.

    ``authorization`` answers who may do what, ``identity_queries`` which accounts,
    organisations and teams exist (the two differ when serving the registry as of a
    moment: see ``Guard``); ``read_only``, when set, is why every write is refused.
    """
    g = Guard(authorization, queries, identity_queries)
    router = ApiV1Router(authenticator, read_only)
    accounts = identity_queries
    routes: list[tuple[str, object]] = [
        ("/error/{error_type}", ErrorDescriptionResource()),
        ("/user", users.CurrentUserResource(g, accounts, identity, tag_windows)),
        ("/users/{username}", users.PublicUserResource(g, accounts)),
        ("/superuser/users", users.SuperuserUsersResource(g, accounts, identity)),
        ("/superuser/users/{username}", users.SuperuserUserResource(g, accounts, identity)),
        ("/superuser/sites", sites.SitesResource(g, site_status)),
        ("/user/apptoken", tokens.ApiTokensResource(g, accounts, identity)),
        ("/user/apptoken/{token_id}", tokens.ApiTokenResource(g, accounts, identity)),
        ("/organization", organizations.OrganizationsResource(g, accounts, identity)),
        (
            "/organization/{org}",
            organizations.OrganizationResource(g, accounts, identity, tag_windows),
        ),
        ("/organization/{org}/members", organizations.MembersResource(g, accounts)),
        (
            "/organization/{org}/members/{member}",
            organizations.MemberResource(g, accounts, identity),
        ),
        ("/organization/{org}/team/{team}", teams.TeamResource(g, accounts, identity)),
        ("/organization/{org}/team/{team}/members", teams.TeamMembersResource(g, accounts)),
        (
            "/organization/{org}/team/{team}/members/{member}",
            teams.TeamMemberResource(g, accounts, identity),
        ),
        (
            "/organization/{org}/team/{team}/permissions",
            teams.TeamPermissionsResource(g, accounts),
        ),
        ("/organization/{org}/robots", robots.RobotsResource(g, accounts)),
        ("/organization/{org}/robots/{short}", robots.RobotResource(g, accounts, identity)),
        (
            "/organization/{org}/robots/{short}/regenerate",
            robots.RobotRegenerateResource(g, accounts, identity),
        ),
        (
            "/organization/{org}/robots/{short}/permissions",
            robots.RobotPermissionsResource(g, accounts),
        ),
        (
            "/organization/{org}/proxycache",
            proxy_caches.ProxyCacheResource(g, proxy_cache_service, proxy_cache_queries),
        ),
        (
            "/organization/{org}/validateproxycache",
            proxy_caches.ValidateProxyCacheResource(g, proxy_cache_service),
        ),
        ("/organization/{org}/prototypes", prototypes.PrototypesResource(g, accounts, identity)),
        (
            "/organization/{org}/prototypes/{proto_id}",
            prototypes.PrototypeResource(g, accounts, identity),
        ),
        ("/repository", repositories.RepositoriesResource(g, accounts, queries, registry)),
        (
            _REPO,
            repositories.RepositoryResource(g, accounts, queries, registry, mirror_service),
        ),
        (_REPO + "/changevisibility", repositories.VisibilityResource(g, registry)),
        (_REPO + "/permissions/user", permissions.UserPermissionsResource(g, accounts)),
        (
            _REPO + "/permissions/user/{username}",
            permissions.UserPermissionResource(g, accounts, registry),
        ),
        (
            _REPO + "/permissions/user/{username}/transitive",
            permissions.TransitivePermissionResource(g, accounts),
        ),
        (_REPO + "/permissions/team", permissions.TeamPermissionsResource(g, accounts)),
        (
            _REPO + "/permissions/team/{team}",
            permissions.TeamPermissionResource(g, accounts, registry),
        ),
        (_REPO + "/tag", tags.TagListResource(g, queries)),
        (_REPO + "/tag/{tag}", tags.TagResource(g, registry)),
        (_REPO + "/tag/{tag}/restore", tags.TagRestoreResource(g, registry)),
        (_REPO + "/mirror", mirrors.MirrorResource(g, mirror_service)),
        (_REPO + "/mirror/sync-now", mirrors.MirrorSyncNowResource(g, mirror_service)),
        (_REPO + "/mirror/sync-cancel", mirrors.MirrorSyncCancelResource(g, mirror_service)),
        (_REPO + "/changestate", mirrors.ChangeStateResource(g, mirror_service)),
        *logs.routes(g, audit_queries),
    ]
    for template, resource in routes:
        router.add(template, resource)
    return router


def register(app: falcon.App[falcon.Request, falcon.Response], router: ApiV1Router) -> None:
    """Mount ``router`` (see ``build_router``) on ``app`` at /api/v1."""
    app.add_sink(router, prefix=SINK_PATTERN)
