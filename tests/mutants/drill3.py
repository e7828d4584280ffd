"""Drill 3's mutants: schemas with holes, and log_action functions that rewrite or garble."""

from tests.mutants import Mutant

TEXT = "audit_log has a text column for every field"
NOT_NULL = "required fields are NOT NULL"
ENUMS = "decision, outcome and reversibility_class take only known values"
STORED = "no statement can change or remove a stored row"
INSERT_ONLY = "log_action runs nothing but INSERT"
AS_GIVEN = "every field is stored as given and reads back"
TIMESTAMPS = "timestamps are ISO 8601 in UTC with an offset"
MISSING = "a missing field raises an error naming it and writes nothing"
ROLLBACK = "the row survives the caller's rollback"

UPDATE_TRIGGER = """CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: rows cannot be updated'); END;"""
DELETE_TRIGGER = """CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: rows cannot be deleted'); END;"""
REPLACE_GUARD = """CREATE TRIGGER audit_log_no_replace BEFORE INSERT ON audit_log
WHEN EXISTS (SELECT 1 FROM audit_log WHERE seq = NEW.seq)
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: rows cannot be replaced'); END;"""
CHECK_MISSING = """    missing = [field for field in ENTRY_FIELDS if field not in entry]
    if missing:
        raise ValueError(f"entry has no {', '.join(missing)}")
"""
ROW_FROM_ENTRY = "row = {field: entry[field] for field in ENTRY_FIELDS}"
INSERT = '''    with conn:  # commits, so the row is kept whatever the caller does next
        conn.execute(f"INSERT INTO audit_log ({columns}) VALUES ({placeholders})", row)'''
NOW = 'row["timestamp"] = datetime.now(UTC).isoformat()'

MUTANTS = [
    # -- the schema --------------------------------------------------------------------------------
    Mutant("datetime-column-type", "DATETIME looks right; SQLite stores the column as NUMERIC",
           (("proposed_at         TEXT NOT NULL,", "proposed_at         DATETIME NOT NULL,"),
            (") STRICT;", ");")),
           {TEXT: "proposed_at is declared DATETIME, which SQLite treats as NUMERIC"}),
    Mutant("nullable-approver", "a decision with nobody behind it",
           (("approver_id         TEXT NOT NULL,", "approver_id         TEXT,"),),
           {NOT_NULL: "NULL in approver_id"}),
    Mutant("outcome-unchecked", "the seed's outcome 'rejected' goes in",
           (("outcome             TEXT NOT NULL CHECK (outcome IN\n"
             "        ('success', 'error', 'rollback', 'not_executed')),",
             "outcome             TEXT NOT NULL,"),),
           {ENUMS: "outcome 'rejected'"}),
    Mutant("check-ignores-case", "'Irreversible_High' is let in by a lenient CHECK",
           (("CHECK (reversibility_class IN", "CHECK (lower(reversibility_class) IN"),),
           {ENUMS: "reversibility_class 'Irreversible_High'"}, subtle=True),
    Mutant("check-trims-spaces", "'success ' passes a CHECK on trim(outcome)",
           (("CHECK (outcome IN", "CHECK (trim(outcome) IN"),),
           {ENUMS: "outcome 'success '"}, subtle=True),
    Mutant("no-update-trigger", "any row can be rewritten",
           ((UPDATE_TRIGGER, ""),),
           {STORED: "ran and changed or removed a stored row"}),
    Mutant("update-trigger-on-some-columns", "UPDATE OF decision, outcome guards two columns",
           (("BEFORE UPDATE ON audit_log", "BEFORE UPDATE OF decision, outcome ON audit_log"),),
           {STORED: "UPDATE audit_log SET timestamp"}, subtle=True),
    Mutant("triggers-ignore-silently", "RAISE(IGNORE): the caller thinks the edit worked",
           (("RAISE(ABORT, 'audit_log is append-only: rows cannot be updated')",
             "RAISE(IGNORE)"),
            ("RAISE(ABORT, 'audit_log is append-only: rows cannot be deleted')",
             "RAISE(IGNORE)")),
           {STORED: "skipped silently"}, subtle=True),
    Mutant("after-trigger-raise-fail", "RAISE(FAIL) after the row changed keeps the change",
           (("BEFORE UPDATE ON audit_log\nBEGIN SELECT RAISE(ABORT,",
             "AFTER UPDATE ON audit_log\nBEGIN SELECT RAISE(FAIL,"),),
           {STORED: "refused, yet a stored row changed"}, subtle=True),
    Mutant("delete-trigger-for-approved-rows-only", "rejected decisions can be deleted",
           (("BEFORE DELETE ON audit_log\nBEGIN",
             "BEFORE DELETE ON audit_log WHEN OLD.decision = 'approved'\nBEGIN"),),
           {STORED: "DELETE FROM audit_log WHERE rowid"}, subtle=True),
    Mutant("no-replace-guard", "INSERT OR REPLACE deletes a row without a DELETE trigger",
           ((REPLACE_GUARD, ""),),
           {STORED: "INSERT OR REPLACE INTO audit_log (rowid"}, subtle=True),
    # -- log_action --------------------------------------------------------------------------------
    Mutant("update-after-insert", "log_action fixes up its row with an UPDATE",
           ((INSERT, INSERT + '\n        conn.execute("UPDATE audit_log SET timestamp = ? WHERE '
                              'seq = last_insert_rowid()", (row["timestamp"],))'),),
           # the UPDATE trigger refuses it, so every call to log_action fails
           {INSERT_ONLY: "UPDATE audit_log SET timestamp", AS_GIVEN: "raised IntegrityError",
            TIMESTAMPS: "raised IntegrityError", MISSING: "raised IntegrityError",
            ROLLBACK: "raised IntegrityError"}),
    Mutant("insert-or-replace", "a writer that can replace can rewrite history",
           (('f"INSERT INTO audit_log', 'f"INSERT OR REPLACE INTO audit_log'),),
           {INSERT_ONLY: "REPLACE deletes the row it replaces"}),
    Mutant("retention-delete", "log_action prunes rows older than 90 days while it is there",
           ((INSERT, INSERT + '\n        conn.execute("DELETE FROM audit_log WHERE timestamp < '
                              "?\", ('2000-01-01',))"),),
           {INSERT_ONLY: "a DELETE"}, subtle=True),
    Mutant("sql-built-with-quotes", "O'Brien breaks the INSERT (or rewrites it)",
           (("VALUES ({placeholders})\", row)",
             "VALUES ({', '.join(repr(str(v)) if v is not None else 'NULL' "
             "for v in row.values())})\")"),),
           {AS_GIVEN: "raised OperationalError"}, subtle=True),
    Mutant("parameters-as-python-repr", "str(dict) is not JSON: nobody can parse it back",
           (('json.dumps(row["parameters"], sort_keys=True)', 'str(row["parameters"])'),
            ("CHECK (json_valid(parameters))", "")),
           {AS_GIVEN: "parameters do not read back"}, subtle=True),
    Mutant("positional-values-out-of-order", "session and approver land in each other's column",
           ((INSERT, '''    with conn:
        conn.execute("INSERT INTO audit_log VALUES (NULL, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", (
            row["timestamp"], row["approver_id"], row["action_type"], row["parameters"],
            row["reversibility_class"], row["session_id"], row["decision"], row["outcome"],
            row["proposed_at"], row["executed_at"]))'''),),
           {AS_GIVEN: "session_id is not stored as given"}, subtle=True),
    Mutant("naive-utcnow", "datetime.utcnow(): no offset, nobody knows which clock",
           ((NOW, 'row["timestamp"] = datetime.utcnow().isoformat()'),),
           {TIMESTAMPS: "no offset"}),
    Mutant("local-offset-kept", "+02:00 times next to UTC ones sort wrong as text",
           (("return moment.astimezone(UTC).isoformat()", "return moment.isoformat()"),),
           {TIMESTAMPS: "convert it to UTC"}, subtle=True),
    Mutant("guesses-a-missing-timezone", "a naive datetime is taken as UTC",
           (("if not isinstance(moment, datetime) or moment.utcoffset() is None:",
             "if not isinstance(moment, datetime):"),),
           {TIMESTAMPS: "(no timezone) and wrote a row"}, subtle=True),
    Mutant("default-current-timestamp", "SQLite's CURRENT_TIMESTAMP has no offset",
           (("timestamp           TEXT NOT NULL,",
             "timestamp           TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,"),
            (NOW, "pass")),
           {TIMESTAMPS: "no offset"}, subtle=True),
    Mutant("entry-get", "a forgotten field becomes NULL, or a row with a hole",
           ((CHECK_MISSING, ""),
            (ROW_FROM_ENTRY, "row = {field: entry.get(field) for field in ENTRY_FIELDS}")),
           {MISSING: "without executed_at: no error, and 1 row(s) written"}, subtle=True),
    Mutant("checks-after-writing", "the error comes after the row is in",
           ((CHECK_MISSING, ""),
            (ROW_FROM_ENTRY, "row = {field: entry.get(field) for field in ENTRY_FIELDS}"),
            (INSERT, INSERT + "\n" + CHECK_MISSING.replace("    ", "    ", 1))),
           {MISSING: "it raised, but a row was written anyway"}),
    Mutant("error-names-no-field", "'incomplete entry': which field?",
           (("""raise ValueError(f"entry has no {', '.join(missing)}")""",
             'raise ValueError("incomplete entry")'),),
           {MISSING: "ValueError: incomplete entry"}),
    Mutant("no-commit", "the caller's rollback erases the record of the decision",
           ((INSERT, '    conn.execute(f"INSERT INTO audit_log ({columns}) VALUES '
                     '({placeholders})", row)'),),
           {ROLLBACK: "lost when the caller rolls back"}, subtle=True),
]

# -- what an answer silently depends on (issue 22): a batch --------------------------------------
TO_UTC = "return moment.astimezone(UTC).isoformat()"
OUTCOME_ROW = 'row["parameters"] = json.dumps(row["parameters"], sort_keys=True)'

MUTANTS += [
    # -- the connection ----------------------------------------------------------------------------
    Mutant("temp-triggers", "the guards live on the connection that ran SCHEMA only",
           (("CREATE TRIGGER audit_log_no_update", "CREATE TEMP TRIGGER audit_log_no_update"),
            ("CREATE TRIGGER audit_log_no_delete", "CREATE TEMP TRIGGER audit_log_no_delete"),
            ("CREATE TRIGGER audit_log_no_replace", "CREATE TEMP TRIGGER audit_log_no_replace")),
           {STORED: "the triggers are TEMP"}, subtle=True),
    Mutant("temp-table", "the audit table vanishes with the connection that made it",
           (("CREATE TABLE audit_log (", "CREATE TEMP TABLE audit_log ("),),
           dict.fromkeys((TEXT, NOT_NULL, ENUMS, STORED, INSERT_ONLY, AS_GIVEN, TIMESTAMPS, MISSING,
                          ROLLBACK), "is a TEMP table"), subtle=True),
    # -- the machine's clock -----------------------------------------------------------------------
    Mutant("local-now-labelled-utc", "local time with +00:00 pasted on: right on a UTC machine",
           ((NOW, 'row["timestamp"] = datetime.now().isoformat() + "+00:00"'),),
           {TIMESTAMPS: "but the row was written at about"}, subtle=True, zone=True),
    Mutant("now-in-the-local-zone", "datetime.now().astimezone(): the offset is the machine's",
           ((NOW, 'row["timestamp"] = datetime.now().astimezone().isoformat()'),),
           {TIMESTAMPS: "convert it to UTC"}, subtle=True, zone=True),
    Mutant("converted-to-the-local-zone", "moment.astimezone() converts to the machine's zone",
           ((TO_UTC, "return moment.astimezone().isoformat()  # normalised"),),
           {TIMESTAMPS: "convert it to UTC"}, subtle=True, zone=True),
    # -- rows of every age -------------------------------------------------------------------------
    Mutant("old-rows-may-be-deleted", "a retention WHEN lets rows older than five years go",
           (("BEFORE DELETE ON audit_log\nBEGIN",
             "BEFORE DELETE ON audit_log WHEN OLD.timestamp >= datetime('now', '-5 years')"
             "\nBEGIN"),),
           {STORED: "DELETE FROM audit_log WHERE rowid"}, subtle=True),
    Mutant("new-rows-may-be-corrected", "a row can be fixed up in its first hour",
           (("BEFORE UPDATE ON audit_log\nBEGIN",
             "BEFORE UPDATE ON audit_log WHEN OLD.timestamp < datetime('now', '-1 hour')\nBEGIN"),),
           {STORED: "UPDATE audit_log SET"}, subtle=True),
    # -- every value of every column ---------------------------------------------------------------
    Mutant("outcome-worked-out-from-the-decision", "error and rollback are stored as success",
           ((OUTCOME_ROW, OUTCOME_ROW + '\n    row["outcome"] = ("success" if row["decision"] in '
                                        '("approved", "auto-approved") else "not_executed")'),),
           {AS_GIVEN: "outcome is not stored as given"}, subtle=True),
    Mutant("timeouts-stored-as-rejections", "the trail cannot tell a timeout from a person's no",
           ((OUTCOME_ROW, OUTCOME_ROW + '\n    if row["decision"] == "timed-out":\n'
                                        '        row["decision"] = "rejected"  # same effect'),),
           {AS_GIVEN: "decision is not stored as given"}, subtle=True),
]
