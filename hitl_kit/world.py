"""A small demo world the agent acts on: customer records, a mailbox, a mailing list, a deployment.

Everything lives in one SQLite database (in memory unless you give a path), so a learner can look
at what an action really did: ``world.rows("customers")``. ``world.tools()`` gives the LangChain
tools an agent can call; each carries its reversibility class in ``tool.metadata``, and
``world.calls`` counts how often each tool ran.
``world.target_of(tool, args)`` reads, without side effects, the record a call would touch, so an
approver sees what they are approving.

Every action is **effectively once** per idempotency key: the agent passes the key (thread and
tool call id) as an argument the model never sees, and the action's writes commit in one
transaction together with a row in ``effect_runs`` holding the key and the result. Called again
with the same key (the process died before the agent recorded the run), the action returns the
stored result and changes nothing. This is the pattern to copy for your own tools whose side
effects live in a database you write to; for an outside service, pass the key on to it.
"""

from __future__ import annotations

import inspect
import json
import sqlite3
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated, Literal

from langchain_core.tools import InjectedToolArg

from hitl_kit.vocabulary import IDEMPOTENCY_KEY

SCHEMA = """
CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL,
                        plan TEXT NOT NULL, notes TEXT NOT NULL DEFAULT '');
CREATE TABLE threads (id INTEGER PRIMARY KEY, sender TEXT NOT NULL, subject TEXT NOT NULL,
                      body TEXT NOT NULL, archived INTEGER NOT NULL DEFAULT 0);
CREATE TABLE drafts (id INTEGER PRIMARY KEY, thread_id INTEGER NOT NULL, body TEXT NOT NULL);
CREATE TABLE outbox (id INTEGER PRIMARY KEY, recipient TEXT NOT NULL, subject TEXT NOT NULL,
                     body TEXT NOT NULL, sent_at TEXT NOT NULL);
CREATE TABLE contacts (id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL);
CREATE TABLE rules (id INTEGER PRIMARY KEY, sender TEXT NOT NULL, action TEXT NOT NULL);
CREATE TABLE unsubscribed (sender TEXT PRIMARY KEY, requested_at TEXT NOT NULL);
CREATE TABLE events (id INTEGER PRIMARY KEY, title TEXT NOT NULL, starts_at TEXT NOT NULL);
CREATE TABLE list_members (list_name TEXT NOT NULL, email TEXT NOT NULL);
CREATE TABLE deployments (id INTEGER PRIMARY KEY, service TEXT NOT NULL, version TEXT NOT NULL,
                          deployed_at TEXT NOT NULL);
CREATE TABLE refunds (id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL, amount REAL NOT NULL,
                      issued_at TEXT NOT NULL);
CREATE TABLE effect_runs (idempotency_key TEXT PRIMARY KEY, action TEXT NOT NULL,
                          result TEXT NOT NULL, ran_at TEXT NOT NULL);
"""
_SCHEMAS: dict[str, type] = {}  # action name -> its arguments' schema (same for every world)

SEED_CUSTOMERS = [
    (1, "Ada Lovelace", "ada@example.com", "enterprise", "key account since 2019"),
    (2, "Grace Hopper", "grace@example.com", "pro", ""),
    (3, "Test Customer", "test@example.com", "trial", "created by QA for smoke tests"),
    (4, "Alan Turing", "alan@example.com", "pro", "renewal due in March"),
]
SEED_THREADS = [
    (1, "billing@vendor.example", "Invoice 1042 is due", "Your invoice of 480 EUR is due Friday."),
    (2, "news@deals.example", "Weekly deals", "Fifty percent off everything this week only."),
    (3, "grace@example.com", "Lunch on Monday?", "Are you free for lunch on Monday at noon?"),
    (4, "ops@example.com", "Release 2.4 ready", "Release 2.4 passed staging; ready when you are."),
]
SEED_LIST_SIZE = 250  # members of the "customers" mailing list

CustomerField = Literal["name", "email", "plan", "notes"]
EDITABLE_CUSTOMER_FIELDS = ("name", "email", "plan", "notes")


def _with_key_argument(run, method):
    """``run`` presented as ``method`` plus an ``idempotency_key`` argument that LangChain
    leaves out of the schema the model sees (``InjectedToolArg``): the kit fills it in."""
    signature = inspect.signature(method)
    key = inspect.Parameter(IDEMPOTENCY_KEY, inspect.Parameter.KEYWORD_ONLY, default=None,
                            annotation=Annotated[str | None, InjectedToolArg])
    run.__signature__ = signature.replace(parameters=[*signature.parameters.values(), key])
    run.__annotations__ = {**method.__annotations__, IDEMPOTENCY_KEY: key.annotation}
    run.__name__, run.__doc__ = method.__name__, method.__doc__
    return run


def _now() -> str:
    return datetime.now(UTC).isoformat()


class World:
    """The demo world's state and the actions on it (thread-safe: one lock around the DB)."""

    def __init__(self, path: str = ":memory:"):
        self.path = path
        # Autocommit: transactions are opened by _write(), which nests (an action inside run_once).
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None,
                                   timeout=30)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        self._depth = 0
        self.calls: Counter[str] = Counter()  # how often each tool really ran
        if path != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
        with self._write():
            if not self._db.execute("SELECT 1 FROM sqlite_master WHERE name='customers'"
                                    ).fetchone():
                self._create()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One transaction around everything inside, however deeply nested: the outermost
        ``_write`` commits (or rolls back), inner ones join it."""
        with self._lock:
            outer = self._depth == 0
            if outer:
                self._db.execute("BEGIN IMMEDIATE")
            self._depth += 1
            try:
                yield self._db
            except BaseException:
                self._depth -= 1
                if outer:
                    self._db.execute("ROLLBACK")
                raise
            self._depth -= 1
            if outer:
                self._db.execute("COMMIT")

    def _create(self) -> None:
        with self._write():
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    self._db.execute(statement)
            self._db.executemany("INSERT INTO customers VALUES (?,?,?,?,?)", SEED_CUSTOMERS)
            self._db.executemany("INSERT INTO threads (id,sender,subject,body) VALUES (?,?,?,?)",
                                 SEED_THREADS)
            self._db.executemany(
                "INSERT INTO list_members VALUES ('customers', ?)",
                [(f"member{i}@example.com",) for i in range(1, SEED_LIST_SIZE + 1)],
            )

    # -- looking at the world (no side effects) ----------------------------------------------
    def rows(self, table: str) -> list[dict]:
        """All rows of one table, as dicts."""
        if table not in self.tables():
            raise ValueError(f"no table {table!r}; tables are: {', '.join(self.tables())}")
        with self._lock:
            return [dict(r) for r in self._db.execute(f"SELECT * FROM {table} ORDER BY rowid")]

    def tables(self) -> list[str]:
        with self._lock:
            found = self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")
            return [r[0] for r in found]

    def count(self, table: str) -> int:
        return len(self.rows(table))

    def _one(self, sql: str, key: int, what: str) -> dict:
        with self._lock:
            row = self._db.execute(sql, (key,)).fetchone()
        if row is None:
            raise LookupError(f"there is no {what} with id {key}")
        return dict(row)

    def _customer(self, customer_id: int) -> dict:
        return self._one("SELECT * FROM customers WHERE id=?", customer_id, "customer")

    def _thread(self, thread_id: int) -> dict:
        return self._one("SELECT * FROM threads WHERE id=?", thread_id, "thread")

    def target_of(self, tool_name: str, args: dict) -> dict | None:
        """The current contents of what a call would touch, read without side effects."""
        try:
            if "customer_id" in args:
                return {"customer": self._customer(int(args["customer_id"]))}
            if "thread_id" in args:
                return {"thread": self._thread(int(args["thread_id"]))}
            if tool_name == "send_mass_email":
                n = len(self._members(args.get("list_name", "")))
                return {"mailing_list": args.get("list_name"), "recipients": n}
            if tool_name == "deploy_to_prod":
                service = args.get("service", "")
                return {"service": service, "currently_deployed": self._deployed(service)}
        except (LookupError, ValueError, TypeError, OverflowError) as exc:
            return {"error": str(exc)}
        return None

    def _members(self, list_name: str) -> list[str]:
        with self._lock:
            found = self._db.execute("SELECT email FROM list_members WHERE list_name=?",
                                     (list_name,))
            return [r[0] for r in found]

    def _deployed(self, service: str) -> str | None:
        with self._lock:
            row = self._db.execute(
                "SELECT version FROM deployments WHERE service=? ORDER BY id DESC LIMIT 1",
                (service,),
            ).fetchone()
        return row[0] if row else None

    # -- customer records ----------------------------------------------------------------------
    def find_customers(self, query: str) -> list[dict]:
        """Find customer records whose name, email or notes contain the query text."""
        like = f"%{query.strip()}%"
        with self._lock:
            found = self._db.execute(
                "SELECT * FROM customers WHERE name LIKE ? OR email LIKE ? OR notes LIKE ?",
                (like, like, like),
            )
            return [dict(r) for r in found]

    def read_customer(self, customer_id: int) -> dict:
        """Read one customer record by id."""
        return self._customer(customer_id)

    def update_customer(self, customer_id: int, field: CustomerField, value: str) -> dict:
        """Change one field (name, email, plan or notes) of a customer record."""
        if field not in EDITABLE_CUSTOMER_FIELDS:
            raise ValueError(f"field must be one of {EDITABLE_CUSTOMER_FIELDS}, not {field!r}")
        before = self._customer(customer_id)
        with self._write():
            self._db.execute(f"UPDATE customers SET {field}=? WHERE id=?", (value, customer_id))
        return {"before": before, "after": self._customer(customer_id)}

    def issue_refund(self, customer_id: int, amount: float) -> dict:
        """Refund an amount of money to a customer. The money leaves at once."""
        if isinstance(amount, bool) or not 0 < amount < 1_000_000:
            raise ValueError(f"a refund is a positive amount under 1,000,000, not {amount!r}")
        self._customer(customer_id)
        with self._write():
            cur = self._db.execute("INSERT INTO refunds (customer_id, amount, issued_at) "
                                   "VALUES (?,?,?)", (customer_id, amount, _now()))
        return {"refund_id": cur.lastrowid, "customer_id": customer_id, "amount": amount}

    def delete_customer(self, customer_id: int) -> dict:
        """Delete a customer record permanently."""
        before = self._customer(customer_id)
        with self._write():
            self._db.execute("DELETE FROM customers WHERE id=?", (customer_id,))
        return {"deleted": before}

    def add_list_members(self, list_name: str, emails: list[str]) -> int:
        """Put addresses on a mailing list (not a tool: set-up for a demonstration)."""
        with self._write():
            self._db.executemany("INSERT INTO list_members VALUES (?, ?)",
                                 [(list_name, email) for email in emails])
        return len(self._members(list_name))

    def receive_mail(self, sender: str, subject: str, body: str) -> int:
        """Put an incoming email in the inbox (not a tool: mail arrives from outside, and what
        it says is untrusted). Returns the new thread's id."""
        with self._write():
            cur = self._db.execute("INSERT INTO threads (sender, subject, body) VALUES (?,?,?)",
                                   (sender, subject, body))
        return cur.lastrowid

    # -- the email assistant ---------------------------------------------------------------------
    def read_inbox(self, limit: int = 10) -> list[dict]:
        """Read the newest threads in the inbox (archived ones are left out)."""
        with self._lock:
            found = self._db.execute(
                "SELECT * FROM threads WHERE archived=0 ORDER BY id DESC LIMIT ?", (limit,)
            )
            return [dict(r) for r in found]

    def search_mail(self, query: str) -> list[dict]:
        """Search all mail threads (archived included) for the query text."""
        like = f"%{query.strip()}%"
        with self._lock:
            found = self._db.execute(
                "SELECT * FROM threads WHERE subject LIKE ? OR body LIKE ? OR sender LIKE ?",
                (like, like, like),
            )
            return [dict(r) for r in found]

    def draft_reply(self, thread_id: int, body: str) -> dict:
        """Save a draft reply to a thread. Nothing is sent; the draft can be edited or discarded."""
        self._thread(thread_id)
        with self._write():
            cur = self._db.execute("INSERT INTO drafts (thread_id, body) VALUES (?,?)",
                                   (thread_id, body))
        return {"draft_id": cur.lastrowid, "thread_id": thread_id}

    def send_reply(self, thread_id: int, body: str) -> dict:
        """Send a reply to the sender of a thread. Once sent it cannot be recalled."""
        thread = self._thread(thread_id)
        return self._send(thread["sender"], "Re: " + thread["subject"], body)

    def _send(self, recipient: str, subject: str, body: str) -> dict:
        with self._write():
            cur = self._db.execute(
                "INSERT INTO outbox (recipient, subject, body, sent_at) VALUES (?,?,?,?)",
                (recipient, subject, body, _now()),
            )
        return {"sent_id": cur.lastrowid, "recipient": recipient}

    def unsubscribe(self, thread_id: int) -> dict:
        """Ask the sender of a thread to remove us from their list. The request cannot be taken
        back."""
        sender = self._thread(thread_id)["sender"]
        with self._write():
            self._db.execute("INSERT OR IGNORE INTO unsubscribed VALUES (?,?)", (sender, _now()))
        self._send(sender, "unsubscribe", "Please remove this address from your list.")
        return {"unsubscribed_from": sender}

    def delete_thread(self, thread_id: int) -> dict:
        """Delete a thread permanently (it skips the trash and cannot be restored)."""
        before = self._thread(thread_id)
        with self._write():
            self._db.execute("DELETE FROM threads WHERE id=?", (thread_id,))
        return {"deleted": before}

    def add_contact(self, name: str, email: str) -> dict:
        """Add a person to the address book."""
        with self._write():
            cur = self._db.execute("INSERT INTO contacts (name, email) VALUES (?,?)", (name, email))
        return {"contact_id": cur.lastrowid}

    def set_rule(self, sender: str, action: Literal["archive", "label", "delete"]) -> dict:
        """Add a mail rule for future mail from a sender: action is archive, label or delete."""
        if action not in ("archive", "label", "delete"):
            raise ValueError(f"action must be archive, label or delete, not {action!r}")
        with self._write():
            cur = self._db.execute("INSERT INTO rules (sender, action) VALUES (?,?)",
                                   (sender, action))
        return {"rule_id": cur.lastrowid}

    def archive_thread(self, thread_id: int) -> dict:
        """Archive a thread: it leaves the inbox but stays searchable and can be moved back."""
        self._thread(thread_id)
        with self._write():
            self._db.execute("UPDATE threads SET archived=1 WHERE id=?", (thread_id,))
        return {"archived": thread_id}

    def create_calendar_event(self, title: str, starts_at: str) -> dict:
        """Put an event on the user's own calendar (no invitations are sent)."""
        with self._write():
            cur = self._db.execute("INSERT INTO events (title, starts_at) VALUES (?,?)",
                                   (title, starts_at))
        return {"event_id": cur.lastrowid}

    # -- high stakes ---------------------------------------------------------------------------
    def send_mass_email(self, list_name: str, subject: str, body: str) -> dict:
        """Send one email to every member of a mailing list."""
        members = self._members(list_name)
        if not members:
            raise LookupError(f"mailing list {list_name!r} has no members")
        for email in members:
            self._send(email, subject, body)
        return {"sent": len(members), "list_name": list_name}

    def deploy_to_prod(self, service: str, version: str) -> dict:
        """Deploy a version of a service to production."""
        previous = self._deployed(service)
        with self._write():
            self._db.execute(
                "INSERT INTO deployments (service, version, deployed_at) VALUES (?,?,?)",
                (service, version, _now()),
            )
        return {"service": service, "version": version, "replaced": previous}

    # -- the tools the agent sees --------------------------------------------------------------
    def tools(self, names: list[str] | None = None) -> list:
        """LangChain tools bound to this world, each tagged with its reversibility class."""
        from langchain_core.tools import StructuredTool

        from hitl_kit.policy import ACTION_TABLE

        chosen = [(n, c) for n, c in ACTION_TABLE if names is None or n in names]
        unknown = set(names or ()) - {n for n, _ in chosen}
        if unknown:
            raise ValueError(f"no such tools: {sorted(unknown)}")
        tools = []
        for name, klass in chosen:
            tool = StructuredTool.from_function(
                self._counted(name),
                name=name,
                description=" ".join(getattr(self, name).__doc__.split()),
                metadata={"reversibility": klass},
                args_schema=_SCHEMAS.get(name),  # built once per action, not once per world
            )
            _SCHEMAS.setdefault(name, tool.args_schema)
            tools.append(tool)
        return tools

    def _counted(self, name: str):
        """The action as a tool: effectively once per idempotency key, and counted in
        ``self.calls`` each time it really runs (so a test can say "ran once")."""
        method = getattr(self, name)

        def run(*args, idempotency_key: str | None = None, **kwargs):
            with self._write():
                if idempotency_key is not None:
                    done = self._db.execute("SELECT result FROM effect_runs WHERE "
                                            "idempotency_key = ?", (idempotency_key,)).fetchone()
                    if done is not None:
                        return json.loads(done[0])
                self.calls[name] += 1
                result = method(*args, **kwargs)
                if idempotency_key is not None:
                    self._db.execute("INSERT INTO effect_runs VALUES (?, ?, ?, ?)",
                                     (idempotency_key, name, json.dumps(result, default=str),
                                      _now()))
                return result

        return _with_key_argument(run, method)

    def close(self) -> None:
        self._db.close()
