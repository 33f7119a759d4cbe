"""Identity aggregates: ``Account`` (a user), ``Organization``, and ``NamespaceClaim``.

Same rules as ``repository.py``: typed past-tense events nested on each aggregate, every
event carrying the command's ``EventContext`` (``actor``, ``site_id``, ``hlc``,
``request_id``); guards in the public methods; ``apply`` only mutates state.

Secrets: only hashes enter events. The caller (the command layer, through the crypto
adapter) hashes passwords and robot tokens; the e-mail address is plain event state that
the at-rest cipher protects.

Duplicates, decided once for all the methods here:

- making something true that already is (adding a member twice, setting the same role,
  granting superuser twice) is a no-op: no event, no error, so HTTP PUTs are idempotent;
- creating a *named* thing that exists (a team, a robot) raises a typed ``Conflict``
  (``TeamExists``, ``RobotExists``), as Quay answers 400 for an existing robot; the
  command layer turns Quay's upsert PUT of a team into create-or-``set_team_role``;
- removing or changing something absent raises a typed ``NotFound``.

One namespace for users and organisations. Quay refuses an organisation named like a
user and vice versa. The ids ``account:<name>`` and ``organization:<name>`` differ, so
two concurrent creators would not collide on them; the command layer therefore saves a
``NamespaceClaim`` (id ``uuid5(site_id, "namespace:<name>")``) in the same ``save()`` as
the new ``Account`` or ``Organization``: the second creator of a name, whichever kind,
fails on the claim's primary key with the library's ``IntegrityError``, which it turns
into ``NameTaken``.

Modules: ``account`` (``Account``), ``organization`` (``Organization``),
``namespace_claim`` (``NamespaceClaim``), ``rules`` (the checks they share).

Stored topics: these classes were once one module, ``cargohold.domain.accounts``; their
events keep the topics they were stored under (``domain/topics.py``), and this package
re-exports them so that those topics resolve by import too.
"""

from cargohold.domain.accounts.account import Account
from cargohold.domain.accounts.namespace_claim import NamespaceClaim
from cargohold.domain.accounts.organization import Organization

__all__ = ["Account", "NamespaceClaim", "Organization"]
