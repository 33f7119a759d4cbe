"""The Quay-shaped REST API under ``/api/v1`` (QUAY-API.md sections 0-7, 10 and 11).

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
/repository/{namespace}/{repo}/logs (also aggregatelogs)    GET                 logs
/repository/{namespace}/{repo}/exportlogs                   GET POST            logs
/organization/{org}/logs, aggregatelogs, exportlogs         GET (export: POST)  logs
/user/logs, aggregatelogs, exportlogs                       GET (export: POST)  logs
/superuser/logs, aggregatelogs, exportlogs                  GET (export: POST)  logs
==========================================================  ==================  ===========
"""

from __future__ import annotations

import falcon

from cargohold.bootstrap import Container
from cargohold.http.api_v1 import (
    logs,
    organizations,
    permissions,
    prototypes,
    repositories,
    robots,
    tags,
    teams,
    tokens,
    users,
)
from cargohold.http.api_v1.errors import ErrorDescriptionResource
from cargohold.http.api_v1.guard import Guard
from cargohold.http.api_v1.router import SINK_PATTERN, ApiV1Router
from cargohold.http.read_only import read_only_refusal

__all__ = ["build_router", "register"]

_REPO = "/repository/{namespace}/{repo}"


def build_router(container: Container) -> ApiV1Router:
    """Every /api/v1 route, wired to its resource."""
    guard = Guard(container.authorization, container.queries, container.identity_queries)
    router = ApiV1Router(container.authenticator, read_only_refusal(container))
    c, g = container, guard
    routes: list[tuple[str, object]] = [
        ("/error/{error_type}", ErrorDescriptionResource()),
        ("/user", users.CurrentUserResource(c, g)),
        ("/users/{username}", users.PublicUserResource(c, g)),
        ("/superuser/users", users.SuperuserUsersResource(c, g)),
        ("/superuser/users/{username}", users.SuperuserUserResource(c, g)),
        ("/user/apptoken", tokens.ApiTokensResource(c, g)),
        ("/user/apptoken/{token_id}", tokens.ApiTokenResource(c, g)),
        ("/organization", organizations.OrganizationsResource(c, g)),
        ("/organization/{org}", organizations.OrganizationResource(c, g)),
        ("/organization/{org}/members", organizations.MembersResource(c, g)),
        ("/organization/{org}/members/{member}", organizations.MemberResource(c, g)),
        ("/organization/{org}/team/{team}", teams.TeamResource(c, g)),
        ("/organization/{org}/team/{team}/members", teams.TeamMembersResource(c, g)),
        ("/organization/{org}/team/{team}/members/{member}", teams.TeamMemberResource(c, g)),
        ("/organization/{org}/team/{team}/permissions", teams.TeamPermissionsResource(c, g)),
        ("/organization/{org}/robots", robots.RobotsResource(c, g)),
        ("/organization/{org}/robots/{short}", robots.RobotResource(c, g)),
        (
            "/organization/{org}/robots/{short}/regenerate",
            robots.RobotRegenerateResource(c, g),
        ),
        (
            "/organization/{org}/robots/{short}/permissions",
            robots.RobotPermissionsResource(c, g),
        ),
        ("/organization/{org}/prototypes", prototypes.PrototypesResource(c, g)),
        ("/organization/{org}/prototypes/{proto_id}", prototypes.PrototypeResource(c, g)),
        ("/repository", repositories.RepositoriesResource(c, g)),
        (_REPO, repositories.RepositoryResource(c, g)),
        (_REPO + "/changevisibility", repositories.VisibilityResource(c, g)),
        (_REPO + "/permissions/user", permissions.UserPermissionsResource(c, g)),
        (_REPO + "/permissions/user/{username}", permissions.UserPermissionResource(c, g)),
        (
            _REPO + "/permissions/user/{username}/transitive",
            permissions.TransitivePermissionResource(c, g),
        ),
        (_REPO + "/permissions/team", permissions.TeamPermissionsResource(c, g)),
        (_REPO + "/permissions/team/{team}", permissions.TeamPermissionResource(c, g)),
        (_REPO + "/tag", tags.TagListResource(c, g)),
        (_REPO + "/tag/{tag}", tags.TagResource(c, g)),
        (_REPO + "/tag/{tag}/restore", tags.TagRestoreResource(c, g)),
        *logs.routes(c, g),
    ]
    for template, resource in routes:
        router.add(template, resource)
    return router


def register(app: falcon.App[falcon.Request, falcon.Response], container: Container) -> None:
    """Mount /api/v1 on ``app``."""
    app.add_sink(build_router(container), prefix=SINK_PATTERN)
