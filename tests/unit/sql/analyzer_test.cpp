#include "sql/analyzer.h"

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <thread>

#include "sql/json.h"

namespace gh::sql {
namespace {

using K = StatementKind;

// Returns a copy: callers bind it to a const reference and the Analysis may be a temporary.
Statement only(const Analysis& a) {
  EXPECT_FALSE(a.error) << (a.error ? a.error->message : "");
  EXPECT_EQ(a.statements.size(), 1u);
  return a.statements.empty() ? Statement{} : a.statements.front();
}

const Relation* find(const Statement& s, std::string_view name, std::string_view schema = {}) {
  for (const Relation& r : s.relations) {
    if (r.name == name && r.schema == schema) return &r;
  }
  return nullptr;
}

bool has(const std::vector<std::string>& v, std::string_view x) { return std::find(v.begin(), v.end(), x) != v.end(); }

bool has_kind(const Statement& s, K k) { return std::find(s.kinds.begin(), s.kinds.end(), k) != s.kinds.end(); }

std::vector<K> kinds(std::string_view sql) { return only(analyze_uncached(sql)).kinds; }

using Strings = std::vector<std::string>;

// ---------------------------------------------------------------- kinds and names

TEST(SqlKindNames, RoundTrip) {
  for (int i = 0; i <= static_cast<int>(K::Unknown); ++i) {
    auto k = static_cast<K>(i);
    auto name = kind_name(k);
    ASSERT_FALSE(name.empty());
    EXPECT_EQ(kind_from_name(name), k) << name;
  }
  EXPECT_EQ(kind_name(K::CopyFrom), "copy_from");
  EXPECT_EQ(kind_name(K::SetRole), "set_role");
  EXPECT_EQ(kind_from_name("nonsense"), std::nullopt);
}

TEST(SqlKinds, TopLevelStatements) {
  EXPECT_EQ(kinds("SELECT 1"), std::vector{K::Select});
  EXPECT_EQ(kinds("INSERT INTO t VALUES (1)"), std::vector{K::Insert});
  EXPECT_EQ(kinds("UPDATE t SET a = 1"), std::vector{K::Update});
  EXPECT_EQ(kinds("DELETE FROM t"), std::vector{K::Delete});
  EXPECT_EQ(kinds("TRUNCATE a"), std::vector{K::Truncate});
  EXPECT_EQ(kinds("COPY t FROM STDIN"), std::vector{K::CopyFrom});
  EXPECT_EQ(kinds("COPY t TO STDOUT"), std::vector{K::CopyTo});
  EXPECT_EQ(kinds("CREATE TABLE t (a int)"), std::vector{K::Create});
  EXPECT_EQ(kinds("CREATE INDEX ON t (a)"), std::vector{K::Create});
  EXPECT_EQ(kinds("ALTER TABLE t ADD COLUMN b int"), std::vector{K::Alter});
  EXPECT_EQ(kinds("ALTER TABLE t RENAME TO u"), std::vector{K::Alter});
  EXPECT_EQ(kinds("DROP TABLE t"), std::vector{K::Drop});
  EXPECT_EQ(kinds("DROP FUNCTION f(int)"), std::vector{K::Drop});
  EXPECT_EQ(kinds("CREATE DATABASE d"), std::vector{K::CreateDatabase});
  EXPECT_EQ(kinds("DROP DATABASE d"), std::vector{K::DropDatabase});
  EXPECT_EQ(kinds("ALTER SYSTEM SET work_mem = '1MB'"), std::vector{K::AlterSystem});
  EXPECT_EQ(kinds("GRANT SELECT ON t TO bob"), std::vector{K::Grant});
  EXPECT_EQ(kinds("REVOKE SELECT ON t FROM bob"), std::vector{K::Revoke});
  EXPECT_EQ(kinds("CREATE ROLE bob"), std::vector{K::RoleChange});
  EXPECT_EQ(kinds("DROP ROLE bob"), std::vector{K::RoleChange});
  EXPECT_EQ(kinds("GRANT admin TO bob"), std::vector{K::RoleChange});
  EXPECT_EQ(kinds("SET ROLE admin"), std::vector{K::SetRole});
  EXPECT_EQ(kinds("SET work_mem = '4MB'"), std::vector{K::Set});
  EXPECT_EQ(kinds("SHOW work_mem"), std::vector{K::Show});
  EXPECT_EQ(kinds("BEGIN"), std::vector{K::Begin});
  EXPECT_EQ(kinds("START TRANSACTION"), std::vector{K::Begin});
  EXPECT_EQ(kinds("COMMIT"), std::vector{K::Commit});
  EXPECT_EQ(kinds("END"), std::vector{K::Commit});
  EXPECT_EQ(kinds("PREPARE TRANSACTION 'x'"), std::vector{K::Commit});
  EXPECT_EQ(kinds("ROLLBACK"), std::vector{K::Rollback});
  EXPECT_EQ(kinds("ROLLBACK TO SAVEPOINT a"), std::vector{K::Rollback});
  EXPECT_EQ(kinds("SAVEPOINT a"), std::vector{K::Savepoint});
  EXPECT_EQ(kinds("RELEASE a"), std::vector{K::Savepoint});
  EXPECT_EQ(kinds("DEALLOCATE p"), std::vector{K::Deallocate});
  EXPECT_EQ(kinds("FETCH 5 FROM c"), std::vector{K::Fetch});
  EXPECT_EQ(kinds("MOVE 5 IN c"), std::vector{K::Fetch});
  EXPECT_EQ(kinds("CLOSE c"), std::vector{K::CloseCursor});
  EXPECT_EQ(kinds("CALL p(1)"), std::vector{K::Call});
  EXPECT_EQ(kinds("DO $$ BEGIN END $$"), std::vector{K::Do});
  EXPECT_EQ(kinds("CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'"), std::vector{K::CreateFunction});
  EXPECT_EQ(kinds("CREATE PROCEDURE p() LANGUAGE sql AS 'SELECT 1'"), std::vector{K::CreateFunction});
  EXPECT_EQ(kinds("LISTEN x"), std::vector{K::Listen});
  EXPECT_EQ(kinds("NOTIFY x, 'y'"), std::vector{K::Notify});
  EXPECT_EQ(kinds("UNLISTEN *"), std::vector{K::Unlisten});
  EXPECT_EQ(kinds("LOCK TABLE t"), std::vector{K::Lock});
  EXPECT_EQ(kinds("VACUUM t"), std::vector{K::Vacuum});
  EXPECT_EQ(kinds("ANALYZE t"), std::vector{K::Analyze});
  EXPECT_EQ(kinds("DISCARD ALL"), std::vector{K::Discard});
  EXPECT_EQ(kinds("REINDEX TABLE t"), std::vector{K::Maintenance});
  EXPECT_EQ(kinds("CLUSTER t USING i"), std::vector{K::Maintenance});
  EXPECT_EQ(kinds("CHECKPOINT"), std::vector{K::Maintenance});
  EXPECT_EQ(kinds("REFRESH MATERIALIZED VIEW mv"), std::vector{K::Maintenance});
  EXPECT_EQ(kinds("COMMENT ON TABLE t IS 'x'"), std::vector{K::Comment});
  EXPECT_EQ(kinds("EXECUTE p"), std::vector{K::Execute});
  EXPECT_EQ(only(analyze_uncached("EXECUTE p(1)")).object_name, "p");
  EXPECT_EQ(only(analyze_uncached("PREPARE p AS SELECT 1")).object_name, "p");
  EXPECT_EQ(kinds("SET CONSTRAINTS ALL DEFERRED"), std::vector{K::Other});
}

// ---------------------------------------------------------------- relations and columns

TEST(SqlRelations, JoinWithAliasesResolvesColumns) {
  const auto a = analyze_uncached(
      "SELECT o.id, c.name FROM public.orders o JOIN customers AS c ON c.id = o.customer_id WHERE o.total > 10");
  const Statement& s = only(a);
  const Relation* o = find(s, "orders", "public");
  const Relation* c = find(s, "customers");
  ASSERT_TRUE(o && c);
  EXPECT_EQ(o->access, kRead);
  EXPECT_EQ(o->columns_read, (Strings{"customer_id", "id", "total"}));
  EXPECT_EQ(c->columns_read, (Strings{"id", "name"}));
  EXPECT_FALSE(o->all_columns);
  EXPECT_TRUE(s.unresolved_columns.empty());
}

TEST(SqlRelations, UnqualifiedColumnsBelongToTheOnlyRelation) {
  const Statement& s = only(analyze_uncached("SELECT email, name FROM users WHERE id = 1 ORDER BY created"));
  EXPECT_EQ(find(s, "users")->columns_read, (Strings{"created", "email", "id", "name"}));
}

TEST(SqlRelations, UnqualifiedColumnsWithSeveralRelationsAreUnresolved) {
  const Statement& s = only(analyze_uncached("SELECT ssn FROM a, b WHERE a.id = b.id"));
  EXPECT_EQ(find(s, "a")->columns_read, (Strings{"id"}));
  EXPECT_EQ(find(s, "b")->columns_read, (Strings{"id"}));
  EXPECT_EQ(s.unresolved_columns, (Strings{"ssn"}));
}

TEST(SqlRelations, SchemaQualifiedColumnReference) {
  const Statement& s = only(analyze_uncached("SELECT s.t.c, t.d FROM s.t, u"));
  EXPECT_EQ(find(s, "t", "s")->columns_read, (Strings{"c", "d"}));
}

TEST(SqlRelations, StarAndQualifiedStar) {
  const Statement& s = only(analyze_uncached("SELECT * FROM a JOIN b USING (id)"));
  EXPECT_TRUE(find(s, "a")->all_columns);
  EXPECT_TRUE(find(s, "b")->all_columns);
  EXPECT_FALSE(s.whole_row);
  const Statement& q = only(analyze_uncached("SELECT x.*, b.id FROM a x, b"));
  EXPECT_TRUE(find(q, "a")->all_columns);
  EXPECT_FALSE(find(q, "b")->all_columns);
  EXPECT_TRUE(q.whole_row);
}

// t.f is PostgreSQL's attribute notation for f(t): with a row function it reads the whole row
// (found by adversarial testing: p.row_to_json read a classified column past a tag rule).
TEST(SqlRelations, AttributeNotationOfARowFunction) {
  for (const char* sql : {"SELECT p.row_to_json FROM people p", "SELECT people.to_jsonb FROM people",
                          "SELECT public.people.json_agg FROM public.people",
                          "UPDATE people p SET name = name WHERE id = 1 RETURNING p.record_out",
                          "SELECT x.concat FROM (SELECT * FROM people) x JOIN people q ON true"}) {
    const Statement& s = only(analyze_uncached(sql));
    EXPECT_TRUE(s.whole_row) << sql;
    bool all = false;
    for (const auto& r : s.relations) all |= r.name == "people" && r.all_columns;
    EXPECT_TRUE(all) << sql;
    EXPECT_FALSE(s.functions.empty()) << sql;
  }
  const Statement& col = only(analyze_uncached("SELECT p.name, p.email FROM people p"));
  EXPECT_FALSE(col.whole_row);
  EXPECT_FALSE(find(col, "people")->all_columns);
  EXPECT_TRUE(col.functions.empty());
}

TEST(SqlRelations, WholeRowReference) {
  const Statement& s = only(analyze_uncached("SELECT row_to_json(t) FROM t"));
  EXPECT_TRUE(s.whole_row);
  EXPECT_TRUE(find(s, "t")->all_columns);
  EXPECT_TRUE(has(s.functions, "row_to_json"));
}

TEST(SqlRelations, CountStarIsNotAllColumns) {
  const Statement& s = only(analyze_uncached("SELECT count(*) FROM t"));
  EXPECT_FALSE(find(s, "t")->all_columns);
  EXPECT_EQ(find(s, "t")->access, kRead);
}

TEST(SqlRelations, QuotedIdentifiersKeepCase) {
  const Statement& s = only(analyze_uncached("SELECT \"Email\" FROM \"Sales\".\"Customers\" WHERE Id = 1"));
  const Relation* r = find(s, "Customers", "Sales");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->columns_read, (Strings{"Email", "id"}));
  const Statement& folded = only(analyze_uncached("SELECT 1 FROM Sales.Customers"));
  EXPECT_TRUE(find(folded, "customers", "sales"));
}

TEST(SqlRelations, UnicodeEscapedIdentifier) {
  const Statement& s = only(analyze_uncached("SELECT U&\"d\\0061t\\+000061\" FROM U&\"t\\0061ble\""));
  const Relation* r = find(s, "table");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->columns_read, (Strings{"data"}));
}

TEST(SqlRelations, SubqueriesInFromWhereSelectAndJoinOn) {
  const Statement& s = only(analyze_uncached(
      "SELECT (SELECT max(v) FROM s1), x.a FROM (SELECT a FROM s2) x "
      "JOIN s3 ON s3.id IN (SELECT id FROM s4) WHERE EXISTS (SELECT 1 FROM s5 WHERE s5.k = x.a)"));
  for (const char* n : {"s1", "s2", "s3", "s4", "s5"}) {
    const Relation* r = find(s, n);
    ASSERT_TRUE(r) << n;
    EXPECT_EQ(r->access, kRead) << n;
  }
  EXPECT_EQ(find(s, "s1")->columns_read, (Strings{"v"}));
  EXPECT_EQ(find(s, "s2")->columns_read, (Strings{"a"}));
  EXPECT_EQ(find(s, "s5")->columns_read, (Strings{"k"}));
  EXPECT_EQ(s.kinds, std::vector{K::Select});
  EXPECT_TRUE(has(s.functions, "max"));
}

TEST(SqlRelations, NonLateralSubqueryCannotSeeSiblings) {
  // Inside the subquery, `a` is not a FROM sibling: a.x stays unattributed to a.
  const Statement& s = only(analyze_uncached("SELECT * FROM a, (SELECT b.y FROM b) s"));
  EXPECT_TRUE(find(s, "a")->columns_read.empty());
  EXPECT_EQ(find(s, "b")->columns_read, (Strings{"y"}));
}

TEST(SqlRelations, Lateral) {
  const Statement& s =
      only(analyze_uncached("SELECT * FROM a, LATERAL (SELECT * FROM b WHERE b.x = a.x) s, generate_series(1, a.n) g"));
  EXPECT_EQ(find(s, "a")->columns_read, (Strings{"n", "x"}));
  EXPECT_EQ(find(s, "b")->columns_read, (Strings{"x"}));
  EXPECT_TRUE(has(s.functions, "generate_series"));
}

TEST(SqlRelations, UnionAndIntersect) {
  const Statement& s =
      only(analyze_uncached("SELECT a FROM t1 UNION ALL SELECT b FROM t2 INTERSECT SELECT c FROM t3 ORDER BY 1"));
  EXPECT_EQ(s.kinds, std::vector{K::Select});
  EXPECT_EQ(find(s, "t1")->columns_read, (Strings{"a"}));
  EXPECT_EQ(find(s, "t2")->columns_read, (Strings{"b"}));
  EXPECT_EQ(find(s, "t3")->columns_read, (Strings{"c"}));
}

TEST(SqlRelations, CteNamesAreNotRelations) {
  const Statement& s = only(analyze_uncached("WITH t AS (SELECT id FROM real_t) SELECT id FROM t"));
  EXPECT_FALSE(find(s, "t"));
  EXPECT_TRUE(find(s, "real_t"));
  EXPECT_EQ(s.relations.size(), 1u);
}

TEST(SqlRelations, CteScopingNonRecursiveBodySeesTheTable) {
  // A non-recursive CTE cannot see itself: the inner t is the table.
  const Statement& s = only(analyze_uncached("WITH t AS (SELECT * FROM t) SELECT * FROM t"));
  ASSERT_TRUE(find(s, "t"));
  EXPECT_EQ(s.relations.size(), 1u);
  // A schema-qualified name is never a CTE.
  const Statement& q = only(analyze_uncached("WITH t AS (SELECT 1) SELECT * FROM public.t, t"));
  EXPECT_TRUE(find(q, "t", "public"));
  EXPECT_FALSE(find(q, "t"));
  // A CTE declared in a subquery is not visible outside it.
  const Statement& r = only(analyze_uncached("SELECT * FROM (WITH c AS (SELECT 1) SELECT * FROM c) x, c"));
  EXPECT_TRUE(find(r, "c"));
}

TEST(SqlRelations, RecursiveCte) {
  const Statement& s = only(analyze_uncached(
      "WITH RECURSIVE tree AS (SELECT id, parent FROM nodes WHERE parent IS NULL "
      "UNION ALL SELECT n.id, n.parent FROM nodes n JOIN tree ON n.parent = tree.id) SELECT * FROM tree"));
  EXPECT_EQ(s.relations.size(), 1u);
  EXPECT_EQ(find(s, "nodes")->columns_read, (Strings{"id", "parent"}));
}

TEST(SqlRelations, DropTruncateGrant) {
  const Statement& d = only(analyze_uncached("DROP TABLE a, s.b"));
  EXPECT_EQ(find(d, "a")->access, kDdl);
  EXPECT_EQ(find(d, "b", "s")->access, kDdl);
  const Statement& t = only(analyze_uncached("TRUNCATE a, s.b"));
  EXPECT_EQ(find(t, "a")->access, kTruncate);
  EXPECT_EQ(find(t, "b", "s")->access, kTruncate);
  const Statement& g = only(analyze_uncached("GRANT SELECT ON t, s.u TO bob"));
  EXPECT_EQ(find(g, "t")->access, kDdl);
  EXPECT_EQ(find(g, "u", "s")->access, kDdl);
  EXPECT_TRUE(only(analyze_uncached("GRANT EXECUTE ON FUNCTION f() TO bob")).relations.empty());
}

TEST(SqlRelations, DdlNamesRelations) {
  // An index's key columns are read (a unique violation shows their values).
  EXPECT_EQ(find(only(analyze_uncached("CREATE INDEX i ON s.t (a)")), "t", "s")->access, kDdl | kRead);
  EXPECT_EQ(find(only(analyze_uncached("ALTER TABLE t ADD COLUMN c int")), "t")->access, kDdl);
  EXPECT_EQ(find(only(analyze_uncached("COMMENT ON COLUMN s.t.c IS 'x'")), "t", "s")->access, kDdl);
  const Statement& c = only(analyze_uncached("CREATE TABLE t (a text DEFAULT gen_random_uuid()::text)"));
  EXPECT_EQ(find(c, "t")->access, kDdl);
  EXPECT_TRUE(has(c.functions, "gen_random_uuid"));
  EXPECT_EQ(find(only(analyze_uncached("LOCK TABLE t")), "t")->access, 0);
}

TEST(SqlRelations, DestructiveAlter) {
  EXPECT_TRUE(only(analyze_uncached("ALTER TABLE t DROP COLUMN c")).destructive_alter);
  EXPECT_TRUE(only(analyze_uncached("ALTER TABLE t ALTER COLUMN c TYPE bigint")).destructive_alter);
  EXPECT_FALSE(only(analyze_uncached("ALTER TABLE t ADD COLUMN c int")).destructive_alter);
}

TEST(SqlRelations, OrderByOutputNameIsNotAColumn) {
  const Statement& s = only(analyze_uncached(
      "SELECT customer_id, sum(total) AS total_spent FROM shop_order GROUP BY customer_id ORDER BY total_spent DESC"));
  EXPECT_EQ(find(s, "shop_order")->columns_read, (Strings{"customer_id", "total"}));
  const Statement& j = only(analyze_uncached("SELECT a.x AS n FROM a, b ORDER BY n, b.y"));
  EXPECT_TRUE(j.unresolved_columns.empty());
  EXPECT_EQ(find(j, "b")->columns_read, (Strings{"y"}));
}

TEST(SqlRelations, CorrelatedUnqualifiedColumnIsAlsoUnresolved) {
  // PostgreSQL binds ssn to orders only if orders has it, else to customers.
  const Statement& s = only(analyze_uncached("SELECT (SELECT ssn FROM orders LIMIT 1) FROM customers"));
  EXPECT_EQ(find(s, "orders")->columns_read, (Strings{"ssn"}));
  EXPECT_EQ(s.unresolved_columns, (Strings{"ssn"}));
  // The same relation inside and outside: no doubt.
  const Statement& u = only(analyze_uncached(
      "UPDATE jobs SET state = 'taken' WHERE id = (SELECT id FROM jobs WHERE state = 'new' LIMIT 1)"));
  EXPECT_TRUE(u.unresolved_columns.empty());
  // A subquery whose output names are known binds them; other names go outward.
  const Statement& k = only(analyze_uncached("SELECT a, z FROM t, (VALUES (1)) v(z)"));
  EXPECT_EQ(find(k, "t")->columns_read, (Strings{"a"}));
  EXPECT_TRUE(k.unresolved_columns.empty());
  const Statement& c = only(analyze_uncached("WITH c AS (SELECT 1 AS n) SELECT n, m FROM c, t"));
  EXPECT_EQ(find(c, "t")->columns_read, (Strings{"m"}));
  EXPECT_TRUE(c.unresolved_columns.empty());
}

TEST(SqlRelations, FunctionAliasIsAColumnNotAWholeRow) {
  const Statement& s = only(analyze_uncached("SELECT x FROM t, unnest(t.arr) x"));
  EXPECT_FALSE(s.whole_row);
  EXPECT_FALSE(find(s, "t")->all_columns);
  const Statement& d =
      only(analyze_uncached("SELECT array(SELECT x FROM pg_catalog.unnest(evttags) AS t(x)) FROM pg_event_trigger"));
  EXPECT_TRUE(d.unresolved_columns.empty());
  EXPECT_EQ(find(d, "pg_event_trigger")->columns_read, (Strings{"evttags"}));
}

TEST(SqlRelations, DropPolicyTriggerRuleNameTheirTable) {
  EXPECT_EQ(find(only(analyze_uncached("DROP POLICY IF EXISTS p ON public.orders")), "orders", "public")->access, kDdl);
  EXPECT_EQ(find(only(analyze_uncached("DROP TRIGGER audit ON orders")), "orders")->access, kDdl);
  EXPECT_EQ(find(only(analyze_uncached("DROP RULE r ON s.t")), "t", "s")->access, kDdl);
}

TEST(SqlRelations, CreateTableLikeReadsTheSource) {
  const Statement& s = only(analyze_uncached("CREATE TABLE x (LIKE src INCLUDING ALL)"));
  EXPECT_EQ(find(s, "x")->access, kDdl);
  EXPECT_EQ(find(s, "src")->access, kRead);
}

TEST(SqlRelations, MaterializedViewWithNoDataIsNotFilled) {
  const Statement& s = only(analyze_uncached("CREATE MATERIALIZED VIEW mv AS SELECT * FROM t WITH NO DATA"));
  EXPECT_EQ(find(s, "mv")->access, kDdl);
  EXPECT_EQ(find(only(analyze_uncached("CREATE MATERIALIZED VIEW mv AS SELECT * FROM t")), "mv")->access,
            kDdl | kInsert);
}

// ---------------------------------------------------------------- DML

TEST(SqlDml, InsertColumnsAndAllColumns) {
  const Statement& s = only(analyze_uncached("INSERT INTO t (a, b) VALUES (1, 2)"));
  const Relation* t = find(s, "t");
  EXPECT_EQ(t->access, kInsert);
  EXPECT_EQ(t->columns_written, (Strings{"a", "b"}));
  EXPECT_FALSE(t->all_columns);
  EXPECT_TRUE(find(only(analyze_uncached("INSERT INTO t VALUES (1, 2)")), "t")->all_columns);
}

TEST(SqlDml, OrmInsertReturning) {
  const Statement& s = only(analyze_uncached(
      "INSERT INTO \"users\" (\"email\", \"name\", \"created_at\") VALUES ($1, $2, now()) RETURNING \"users\".\"id\""));
  const Relation* u = find(s, "users");
  EXPECT_EQ(u->access, kInsert | kRead);
  EXPECT_EQ(u->columns_written, (Strings{"created_at", "email", "name"}));
  EXPECT_EQ(u->columns_read, (Strings{"id"}));
  EXPECT_TRUE(s.returning);
  EXPECT_TRUE(has(s.functions, "now"));
}

TEST(SqlDml, InsertSelect) {
  const Statement& s = only(analyze_uncached("INSERT INTO archive SELECT * FROM orders WHERE created < now()"));
  EXPECT_EQ(s.kinds, std::vector{K::Insert});
  EXPECT_EQ(find(s, "archive")->access, kInsert);
  EXPECT_TRUE(find(s, "orders")->all_columns);
  EXPECT_EQ(find(s, "orders")->columns_read, (Strings{"created"}));
}

TEST(SqlDml, InsertOnConflictDoUpdate) {
  const Statement& s = only(analyze_uncached(
      "INSERT INTO t (a, b) VALUES (1, 'x') ON CONFLICT (a) DO UPDATE SET b = excluded.b WHERE t.c > 0"));
  const Relation* t = find(s, "t");
  EXPECT_EQ(t->access & (kInsert | kUpdate), kInsert | kUpdate);
  EXPECT_EQ(t->columns_written, (Strings{"a", "b"}));
  EXPECT_EQ(t->columns_read, (Strings{"c"}));
  EXPECT_TRUE(has_kind(s, K::Update));
  EXPECT_FALSE(find(s, "excluded"));
  EXPECT_EQ(find(only(analyze_uncached("INSERT INTO t VALUES (1) ON CONFLICT DO NOTHING")), "t")->access, kInsert);
}

TEST(SqlDml, UpdateWithFromAndReturning) {
  const Statement& s = only(analyze_uncached(
      "UPDATE s.t AS x SET a = u.v, b = b + 1 FROM u WHERE x.id = u.id RETURNING x.a"));
  const Relation* t = find(s, "t", "s");
  EXPECT_EQ(t->access, kUpdate | kRead);
  EXPECT_EQ(t->columns_written, (Strings{"a", "b"}));
  EXPECT_EQ(t->columns_read, (Strings{"a", "id"}));
  EXPECT_EQ(find(s, "u")->columns_read, (Strings{"id", "v"}));
  ASSERT_EQ(s.writes.size(), 1u);
  EXPECT_EQ(s.writes[0].kind, K::Update);
  EXPECT_EQ(s.writes[0].relation, "s.t");
  EXPECT_TRUE(s.writes[0].has_where);
  EXPECT_FALSE(s.writes[0].where_trivially_true);
  EXPECT_TRUE(s.returning);
  EXPECT_EQ(s.unresolved_columns, (Strings{"b"}));  // b: t or u, not told
}

TEST(SqlDml, DeleteWithoutWhere) {
  const Statement& s = only(analyze_uncached("DELETE FROM t"));
  EXPECT_EQ(find(s, "t")->access, kDelete);
  ASSERT_EQ(s.writes.size(), 1u);
  EXPECT_EQ(s.writes[0].kind, K::Delete);
  EXPECT_FALSE(s.writes[0].has_where);
}

TEST(SqlDml, DeleteUsing) {
  const Statement& s = only(analyze_uncached("DELETE FROM t USING u WHERE t.id = u.id AND u.gone"));
  EXPECT_EQ(find(s, "t")->access, kDelete | kRead);
  EXPECT_EQ(find(s, "u")->columns_read, (Strings{"gone", "id"}));
  EXPECT_TRUE(s.writes[0].has_where);
}

TEST(SqlDml, Merge) {
  const Statement& s = only(analyze_uncached(
      "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED AND s.x > 1 THEN UPDATE SET v = s.v "
      "WHEN MATCHED THEN DELETE WHEN NOT MATCHED THEN INSERT (id, v) VALUES (s.id, s.v)"));
  EXPECT_EQ(s.kinds.front(), K::Merge);
  EXPECT_TRUE(has_kind(s, K::Update) && has_kind(s, K::Delete) && has_kind(s, K::Insert));
  const Relation* t = find(s, "t");
  EXPECT_EQ(t->access, kRead | kInsert | kUpdate | kDelete);
  EXPECT_EQ(t->columns_written, (Strings{"id", "v"}));
  EXPECT_EQ(find(s, "s")->columns_read, (Strings{"id", "v", "x"}));
  ASSERT_EQ(s.writes.size(), 2u);
  EXPECT_TRUE(s.writes[0].has_where);
  EXPECT_FALSE(s.writes[0].where_trivially_true);
  const Statement& all = only(analyze_uncached("MERGE INTO t USING s ON true WHEN MATCHED THEN DELETE"));
  ASSERT_EQ(all.writes.size(), 1u);
  EXPECT_TRUE(all.writes[0].where_trivially_true);
}

TEST(SqlDml, DataModifyingCte) {
  const Statement& s = only(analyze_uncached("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d"));
  EXPECT_EQ(s.kinds, (std::vector{K::Select, K::Delete}));
  ASSERT_EQ(s.relations.size(), 1u);
  EXPECT_EQ(s.relations[0].name, "t");
  EXPECT_TRUE(s.relations[0].access & kDelete);
  ASSERT_EQ(s.writes.size(), 1u);
  EXPECT_EQ(s.writes[0].kind, K::Delete);
  EXPECT_FALSE(s.writes[0].has_where);
  EXPECT_TRUE(s.returning);
}

TEST(SqlDml, CteInsideUpdate) {
  const Statement& s = only(analyze_uncached(
      "WITH ids AS (SELECT id FROM stale) UPDATE t SET gone = true WHERE id IN (SELECT id FROM ids)"));
  EXPECT_EQ(s.kinds, std::vector{K::Update});
  EXPECT_FALSE(find(s, "ids"));
  EXPECT_TRUE(find(s, "stale"));
}

TEST(SqlDml, SelectForUpdateIsARead) {
  const Statement& s = only(analyze_uncached("SELECT * FROM t WHERE id = 1 FOR UPDATE OF t"));
  EXPECT_EQ(find(s, "t")->access, kRead);
  EXPECT_EQ(s.relations.size(), 1u);
}

// ---------------------------------------------------------------- nested statements

TEST(SqlNested, ExplainAnalyzeRunsTheStatement) {
  const Statement& s = only(analyze_uncached("EXPLAIN ANALYZE DELETE FROM t"));
  EXPECT_EQ(s.kinds, (std::vector{K::Explain, K::Delete}));
  EXPECT_EQ(find(s, "t")->access, kDelete);
  ASSERT_EQ(s.writes.size(), 1u);
  const Statement& o = only(analyze_uncached("EXPLAIN (ANALYZE true, BUFFERS) UPDATE t SET a = 1"));
  EXPECT_EQ(o.kinds, (std::vector{K::Explain, K::Update}));
}

TEST(SqlNested, ExplainWithoutAnalyzeOnlyPlans) {
  for (const char* sql : {"EXPLAIN DELETE FROM t", "EXPLAIN (ANALYZE false) DELETE FROM t",
                          "EXPLAIN (ANALYZE off, VERBOSE) DELETE FROM t"}) {
    const Statement& s = only(analyze_uncached(sql));
    EXPECT_EQ(s.kinds, std::vector{K::Explain}) << sql;
    EXPECT_EQ(find(s, "t")->access, kRead) << sql;
    EXPECT_TRUE(s.writes.empty()) << sql;
  }
}

TEST(SqlNested, PrepareAnalysesItsStatement) {
  const Statement& s = only(analyze_uncached("PREPARE p AS DELETE FROM t"));
  EXPECT_EQ(s.kinds, (std::vector{K::Prepare, K::Delete}));
  EXPECT_EQ(find(s, "t")->access, kDelete);
  ASSERT_EQ(s.writes.size(), 1u);
  EXPECT_FALSE(s.writes[0].has_where);
  EXPECT_FALSE(s.opaque_code);
  const Statement& q = only(analyze_uncached("PREPARE q(int) AS SELECT * FROM t WHERE id = $1"));
  EXPECT_EQ(q.kinds, (std::vector{K::Prepare, K::Select}));
}

TEST(SqlNested, ExecuteIsOpaque) {
  const Statement& s = only(analyze_uncached("EXECUTE p(1, now())"));
  EXPECT_EQ(s.kinds, std::vector{K::Execute});
  EXPECT_TRUE(s.opaque_code);
  EXPECT_TRUE(has(s.functions, "now"));
}

TEST(SqlNested, ExecuteOfAStatementPreparedInTheSameText) {
  const Analysis a = analyze_uncached("PREPARE q AS SELECT ssn FROM customers; EXECUTE q; DEALLOCATE q; EXECUTE q");
  ASSERT_EQ(a.statements.size(), 4u);
  const Statement& e = a.statements[1];
  EXPECT_EQ(e.kinds, (std::vector{K::Execute, K::Select}));
  EXPECT_EQ(e.object_name, "q");
  EXPECT_FALSE(e.opaque_code);
  ASSERT_TRUE(find(e, "customers"));
  EXPECT_EQ(find(e, "customers")->columns_read, (Strings{"ssn"}));
  EXPECT_EQ(a.statements[2].kinds, std::vector{K::Deallocate});
  EXPECT_EQ(a.statements[2].object_name, "q");
  EXPECT_TRUE(a.statements[3].opaque_code);  // deallocated: not known any more
  EXPECT_EQ(a.statements[3].kinds, std::vector{K::Execute});
  EXPECT_EQ(only(analyze_uncached("DEALLOCATE ALL")).object_name, "");
}

TEST(SqlNested, CopyQueryDeleteReturning) {
  const Statement& s = only(analyze_uncached("COPY (DELETE FROM t RETURNING *) TO STDOUT"));
  EXPECT_EQ(s.kinds, (std::vector{K::CopyTo, K::Delete}));
  EXPECT_TRUE(find(s, "t")->access & kDelete);
  EXPECT_TRUE(find(s, "t")->all_columns);
  EXPECT_EQ(s.writes.size(), 1u);
  EXPECT_FALSE(s.server_file_access);
}

TEST(SqlNested, CopyTableColumnsAndWhere) {
  const Statement& to = only(analyze_uncached("COPY t (a, b) TO STDOUT"));
  EXPECT_EQ(find(to, "t")->access, kRead);
  EXPECT_EQ(find(to, "t")->columns_read, (Strings{"a", "b"}));
  const Statement& from = only(analyze_uncached("COPY t (a, b) FROM STDIN WHERE a > 1"));
  EXPECT_EQ(find(from, "t")->access, kInsert | kRead);
  EXPECT_EQ(find(from, "t")->columns_written, (Strings{"a", "b"}));
  EXPECT_TRUE(find(only(analyze_uncached("COPY t FROM STDIN")), "t")->all_columns);
}

TEST(SqlNested, DeclareCursor) {
  const Statement& s = only(analyze_uncached("DECLARE c CURSOR FOR SELECT ssn FROM people"));
  EXPECT_EQ(s.kinds, (std::vector{K::DeclareCursor, K::Select}));
  EXPECT_EQ(find(s, "people")->columns_read, (Strings{"ssn"}));
}

TEST(SqlNested, CreateTableAsSelect) {
  const Statement& s = only(analyze_uncached("CREATE TABLE x AS SELECT * FROM secret"));
  EXPECT_EQ(s.kinds, (std::vector{K::Create, K::Select}));
  EXPECT_EQ(find(s, "x")->access, kDdl | kInsert);
  EXPECT_EQ(find(s, "secret")->access, kRead);
  EXPECT_TRUE(find(s, "secret")->all_columns);
}

TEST(SqlNested, SelectInto) {
  const Statement& s = only(analyze_uncached("SELECT * INTO x FROM secret"));
  EXPECT_EQ(s.kinds, (std::vector{K::Select, K::Create}));
  EXPECT_EQ(find(s, "x")->access, kDdl | kInsert);
  EXPECT_TRUE(find(s, "secret")->all_columns);
}

TEST(SqlNested, CreateView) {
  const Statement& s = only(analyze_uncached("CREATE VIEW v AS SELECT a FROM s.t"));
  EXPECT_EQ(s.kinds, (std::vector{K::Create, K::Select}));
  EXPECT_EQ(find(s, "v")->access, kDdl);
  EXPECT_EQ(find(s, "t", "s")->columns_read, (Strings{"a"}));
}

TEST(SqlNested, CreateRuleActions) {
  const Statement& s =
      only(analyze_uncached("CREATE RULE r AS ON INSERT TO t DO INSTEAD (DELETE FROM u; INSERT INTO v VALUES (1))"));
  EXPECT_EQ(s.kinds.front(), K::Create);
  EXPECT_TRUE(has_kind(s, K::Delete) && has_kind(s, K::Insert));
  EXPECT_EQ(find(s, "t")->access, kDdl);
  EXPECT_EQ(find(s, "u")->access, kDelete);
  EXPECT_EQ(s.writes.size(), 1u);
}

// ---------------------------------------------------------------- functions and flags

TEST(SqlFunctions, NamesLowerCaseAndQualified) {
  const Statement& s = only(analyze_uncached("SELECT Lower(a), pg_catalog.upper(b), \"MyFn\"(1) FROM t"));
  EXPECT_TRUE(has(s.functions, "lower"));
  EXPECT_TRUE(has(s.functions, "pg_catalog.upper"));
  EXPECT_TRUE(has(s.functions, "myfn"));
}

TEST(SqlFunctions, InWindowFilterOrderAndFrom) {
  const Statement& s = only(analyze_uncached(
      "SELECT sum(x) FILTER (WHERE f(y)) OVER (PARTITION BY g(z)), string_agg(a, ',' ORDER BY h(a)) "
      "FROM t, unnest(k(1)) u"));
  for (const char* f : {"sum", "f", "g", "string_agg", "h", "unnest", "k"}) EXPECT_TRUE(has(s.functions, f)) << f;
}

TEST(SqlFlags, ServerFileAccess) {
  const Statement& s = only(analyze_uncached("SELECT pg_read_file('/etc/passwd')"));
  EXPECT_TRUE(s.server_file_access);
  EXPECT_TRUE(has(s.functions, "pg_read_file"));
  for (const char* sql : {"SELECT pg_catalog.pg_read_binary_file('x')", "SELECT * FROM pg_ls_dir('.')",
                          "SELECT lo_import('/etc/passwd')", "SELECT lo_export(1, '/tmp/x')",
                          "SELECT pg_stat_file('x')", "SELECT pg_file_write('x', 'y', false)",
                          "COPY t FROM '/tmp/x'", "COPY t TO '/tmp/x'", "CREATE EXTENSION file_fdw",
                          "CREATE EXTENSION adminpack", "CREATE SERVER s FOREIGN DATA WRAPPER file_fdw",
                          "CREATE FOREIGN TABLE ft (a text) SERVER s OPTIONS (filename '/etc/passwd')",
                          "LOAD 'x'", "CREATE FUNCTION f() RETURNS int LANGUAGE c AS '/tmp/x.so', 'f'"}) {
    EXPECT_TRUE(only(analyze_uncached(sql)).server_file_access) << sql;
  }
  EXPECT_FALSE(only(analyze_uncached("COPY t FROM STDIN")).server_file_access);
}

TEST(SqlFlags, ServerProgram) {
  EXPECT_TRUE(only(analyze_uncached("COPY t TO PROGRAM 'gzip > /tmp/x'")).server_program);
  EXPECT_TRUE(only(analyze_uncached("COPY t FROM PROGRAM 'curl x'")).server_program);
  EXPECT_TRUE(only(analyze_uncached("CREATE FOREIGN TABLE ft (a text) SERVER s OPTIONS (program 'id')")).server_program);
  EXPECT_FALSE(only(analyze_uncached("COPY t TO '/tmp/x'")).server_program);
  EXPECT_TRUE(only(analyze_uncached("ALTER SYSTEM SET archive_command = 'curl x | sh'")).server_program);
  EXPECT_TRUE(only(analyze_uncached("ALTER SYSTEM SET shared_preload_libraries = 'evil'")).server_file_access);
}

TEST(SqlFlags, RemoteAccess) {
  for (const char* sql : {"SELECT * FROM dblink('host=x', 'SELECT 1') AS t(a int)", "SELECT dblink_exec('x', 'y')",
                          "CREATE SERVER s FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host 'x')",
                          "CREATE USER MAPPING FOR bob SERVER s OPTIONS (user 'x')",
                          "IMPORT FOREIGN SCHEMA public FROM SERVER s INTO local", "CREATE EXTENSION dblink"}) {
    EXPECT_TRUE(only(analyze_uncached(sql)).remote_access) << sql;
  }
}

TEST(SqlFlags, OpaqueCode) {
  for (const char* sql : {"DO $$ BEGIN EXECUTE 'DROP TABLE t'; END $$",
                          "CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $$ BEGIN DELETE FROM t; END $$",
                          "CREATE PROCEDURE p() LANGUAGE sql BEGIN ATOMIC DELETE FROM t; END", "EXECUTE p",
                          "CREATE TRIGGER tr BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION trg()",
                          "SELECT query_to_xml('SELECT * FROM secret', true, false, '')"}) {
    EXPECT_TRUE(only(analyze_uncached(sql)).opaque_code) << sql;
  }
  // The body of a function is not analysed as if it ran now.
  const Statement& f =
      only(analyze_uncached("CREATE FUNCTION f() RETURNS void LANGUAGE sql BEGIN ATOMIC DELETE FROM t; END"));
  EXPECT_EQ(f.kinds, std::vector{K::CreateFunction});
  EXPECT_TRUE(f.writes.empty());
  const Statement& tr = only(analyze_uncached("CREATE TRIGGER tr AFTER UPDATE ON t EXECUTE FUNCTION audit_fn()"));
  EXPECT_TRUE(has(tr.functions, "audit_fn"));
  EXPECT_EQ(find(tr, "t")->access, kDdl);
}

TEST(SqlFlags, RoleChange) {
  for (const char* sql : {"SET ROLE admin", "SET SESSION AUTHORIZATION bob", "RESET ROLE", "CREATE ROLE x SUPERUSER",
                          "ALTER ROLE x WITH PASSWORD 'y'", "DROP USER x", "GRANT admin TO bob",
                          "ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO bob",
                          "SELECT set_config('role', 'admin', false)",
                          // replica mode turns off triggers and foreign keys (found by adversarial testing)
                          "SELECT set_config('session_replication_role', 'replica', false)",
                          "SET session_replication_role = replica",
                          "UPDATE pg_settings SET setting = 'replica' WHERE name = 'session_replication_role'",
                          // a setting the proxy cannot name may be any of them
                          "SELECT set_config(n, 'replica', false) FROM (VALUES ('x')) v(n)",
                          "UPDATE pg_settings SET setting = 'replica'"}) {
    EXPECT_TRUE(only(analyze_uncached(sql)).role_change) << sql;
  }
  EXPECT_FALSE(only(analyze_uncached("SET work_mem = '1MB'")).role_change);
  EXPECT_FALSE(only(analyze_uncached("DISCARD ALL")).role_change);
}

TEST(SqlFlags, TransactionControl) {
  for (const char* sql : {"BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT a", "RELEASE SAVEPOINT a",
                          "COMMIT PREPARED 'x'", "ROLLBACK PREPARED 'x'"}) {
    EXPECT_TRUE(only(analyze_uncached(sql)).transaction_control) << sql;
  }
  EXPECT_FALSE(only(analyze_uncached("SELECT 1")).transaction_control);
}

// ---------------------------------------------------------------- settings

TEST(SqlSettings, RolePasswordsAreSecret) {
  for (const char* sql : {"CREATE ROLE r LOGIN PASSWORD 'x'", "CREATE USER r WITH ENCRYPTED PASSWORD 'x'",
                          "ALTER ROLE r PASSWORD 'x'", "ALTER USER r WITH PASSWORD 'x' VALID UNTIL 'infinity'",
                          "ALTER ROLE r PASSWORD NULL"}) {
    const Statement& s = only(analyze_uncached(sql));
    EXPECT_TRUE(s.secret) << sql;
    EXPECT_EQ(s.normalized.find("'x'"), std::string::npos) << s.normalized;
  }
  for (const char* sql : {"CREATE ROLE r LOGIN", "ALTER ROLE r SET search_path = 'x'", "SELECT 'PASSWORD'"})
    EXPECT_FALSE(only(analyze_uncached(sql)).secret) << sql;
}

// The values of settings that change how the server reads SQL, for the proxy to refuse the SET.
TEST(SqlSettings, ValuesOfSettingsThatChangeTokenising) {
  using V = std::vector<std::pair<std::string, std::string>>;
  auto values = [](const char* sql) { return only(analyze_uncached(sql)).setting_values; };
  EXPECT_EQ(values("SET standard_conforming_strings = off"), (V{{"standard_conforming_strings", "off"}}));
  EXPECT_EQ(values("set standard_conforming_strings to 'FALSE'"), (V{{"standard_conforming_strings", "off"}}));
  EXPECT_EQ(values("SET LOCAL standard_conforming_strings = 0"), (V{{"standard_conforming_strings", "off"}}));
  EXPECT_EQ(values("SET standard_conforming_strings = true"), (V{{"standard_conforming_strings", "on"}}));
  EXPECT_EQ(values("SET standard_conforming_strings = 'maybe'"), (V{{"standard_conforming_strings", "maybe"}}));
  EXPECT_EQ(values("SET NAMES 'SJIS'"), (V{{"client_encoding", "SJIS"}}));
  EXPECT_EQ(values("SET client_encoding TO big5"), (V{{"client_encoding", "big5"}}));
  EXPECT_TRUE(values("SET standard_conforming_strings TO DEFAULT").empty());
  EXPECT_TRUE(values("RESET standard_conforming_strings").empty());
  EXPECT_TRUE(values("SET search_path = off").empty());
}

TEST(SqlSettings, SetResetDiscard) {
  EXPECT_EQ(only(analyze_uncached("SET search_path = a, b")).settings, Strings{"search_path"});
  EXPECT_EQ(only(analyze_uncached("SET LOCAL statement_timeout = 0")).settings, Strings{"statement_timeout"});
  EXPECT_EQ(only(analyze_uncached("RESET work_mem")).settings, Strings{"work_mem"});
  EXPECT_EQ(only(analyze_uncached("RESET ALL")).settings, Strings{"all"});
  EXPECT_EQ(only(analyze_uncached("DISCARD ALL")).settings, Strings{"all"});
  EXPECT_TRUE(only(analyze_uncached("DISCARD PLANS")).settings.empty());
  EXPECT_EQ(only(analyze_uncached("SET ROLE admin")).settings, Strings{"role"});
  EXPECT_EQ(only(analyze_uncached("SET SESSION AUTHORIZATION DEFAULT")).settings, Strings{"session_authorization"});
  EXPECT_EQ(only(analyze_uncached("SET TIME ZONE 'UTC'")).settings, Strings{"timezone"});
  EXPECT_EQ(only(analyze_uncached("SET SCHEMA 'x'")).settings, Strings{"search_path"});
  EXPECT_EQ(only(analyze_uncached("ALTER SYSTEM SET work_mem = '1MB'")).settings, Strings{"work_mem"});
}

TEST(SqlSettings, SetTransactionNamesItsParameters) {
  EXPECT_EQ(only(analyze_uncached("SET TRANSACTION READ WRITE")).settings, Strings{"transaction_read_only"});
  EXPECT_EQ(only(analyze_uncached("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")).settings,
            Strings{"transaction_isolation"});
  EXPECT_EQ(only(analyze_uncached("SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE")).settings,
            Strings{"default_transaction_read_only"});
}

TEST(SqlSettings, CustomSettingNamesAreLowerCased) {
  // GUC names are case-insensitive: a quoted mixed-case name must not slip past a rule.
  EXPECT_EQ(only(analyze_uncached("SET \"GateHouse.Identity\" = 'x'")).settings, Strings{"gatehouse.identity"});
}

TEST(SqlSettings, SetConfig) {
  const Statement& s = only(analyze_uncached("SELECT set_config('search_path', 'evil', false)"));
  EXPECT_EQ(s.settings, Strings{"search_path"});
  EXPECT_EQ(s.kinds, (std::vector{K::Select, K::Set}));
  EXPECT_FALSE(s.opaque_code);
  const Statement& u = only(analyze_uncached("SELECT set_config('Gatehouse.Identity', 'x', false)"));
  EXPECT_EQ(u.settings, Strings{"gatehouse.identity"});
  const Statement& d = only(analyze_uncached("SELECT set_config(name, 'x', false) FROM settings_to_apply"));
  EXPECT_EQ(d.settings, Strings{"*"});
  EXPECT_TRUE(d.opaque_code);
  // pg_dump: set a setting only where the server has it. The name is the WHERE's literal.
  const Statement& p = only(analyze_uncached(
      "SELECT set_config(name, 'view, foreign-table', false) FROM pg_settings WHERE name = 'restrict_nonsystem_relation_kind'"));
  EXPECT_EQ(p.settings, Strings{"restrict_nonsystem_relation_kind"});
  EXPECT_FALSE(p.opaque_code);
  const Statement& q = only(analyze_uncached(
      "SELECT set_config(s.name, 'x', false) FROM pg_catalog.pg_settings s WHERE 'GATEHOUSE.IDENTITY' = s.name"));
  EXPECT_EQ(q.settings, Strings{"gatehouse.identity"});
  // Anything looser is still a name the proxy cannot read.
  for (const char* sql : {"SELECT set_config(name, 'x', false) FROM pg_settings WHERE name LIKE 'gatehouse%'",
                          "SELECT set_config(name, 'x', false) FROM pg_settings WHERE name = 'a' OR true",
                          "SELECT set_config(name, 'x', false) FROM pg_settings, other WHERE name = 'a'",
                          "SELECT set_config(name, 'x', false) FROM public.pg_settings WHERE name = 'a'"})
    EXPECT_EQ(only(analyze_uncached(sql)).settings, Strings{"*"}) << sql;
}

// Column aliases of a table, and columns through a JOIN's alias: which column is read is known
// only to the catalog, so the analysis over-approximates instead of recording nothing (found by
// adversarial testing: classified columns were read past a tag rule).
TEST(SqlColumns, AliasesThatHideWhichColumnIsRead) {
  const Statement& renamed = only(analyze_uncached("SELECT c.e, c.s FROM customers AS c(i, e, s)"));
  EXPECT_TRUE(find(renamed, "customers")->all_columns);
  const Statement& via_join =
      only(analyze_uncached("SELECT j.email FROM (customers JOIN (SELECT 1 AS x) s ON true) AS j"));
  EXPECT_EQ(find(via_join, "customers")->columns_read, (Strings{"email"}));
  const Statement& two = only(analyze_uncached("SELECT j.ssn FROM (a JOIN b ON a.id = b.id) AS j"));
  EXPECT_NE(std::find(find(two, "a")->columns_read.begin(), find(two, "a")->columns_read.end(), "ssn"),
            find(two, "a")->columns_read.end());
  EXPECT_NE(std::find(find(two, "b")->columns_read.begin(), find(two, "b")->columns_read.end(), "ssn"),
            find(two, "b")->columns_read.end());
  const Statement& whole = only(analyze_uncached("SELECT row_to_json(j) FROM (a JOIN b USING (id)) AS j"));
  EXPECT_TRUE(find(whole, "a")->all_columns);
  EXPECT_TRUE(find(whole, "b")->all_columns);
  const Statement& star = only(analyze_uncached("SELECT j.* FROM (a JOIN b USING (id)) AS j"));
  EXPECT_TRUE(find(star, "a")->all_columns);
  // Without column aliases, a table's columns are its own.
  EXPECT_FALSE(find(only(analyze_uncached("SELECT c.email FROM customers AS c")), "customers")->all_columns);
}

// UPDATE pg_settings is set_config through a rule of the view (found by adversarial testing:
// it turned standard_conforming_strings off and the next statement was read wrongly).
TEST(SqlSettings, UpdateOfPgSettingsSetsSettings) {
  const Statement& any = only(analyze_uncached(
      "UPDATE pg_settings SET setting = 'off' WHERE name IN ('standard_conforming_strings', 'escape_string_warning')"));
  EXPECT_EQ(any.settings, Strings{"*"});
  EXPECT_TRUE(any.opaque_code);
  EXPECT_NE(std::find(any.kinds.begin(), any.kinds.end(), K::Set), any.kinds.end());
  const Statement& one = only(analyze_uncached("UPDATE pg_catalog.pg_settings SET setting = '1MB' WHERE name = 'Work_Mem'"));
  EXPECT_EQ(one.settings, Strings{"work_mem"});
  EXPECT_FALSE(one.opaque_code);
  const Statement& role = only(analyze_uncached("UPDATE pg_settings SET setting = 'x' WHERE 'role' = name"));
  EXPECT_TRUE(role.role_change);
  // Another schema's table of that name is an ordinary table.
  EXPECT_TRUE(only(analyze_uncached("UPDATE public.pg_settings SET setting = 'x'")).settings.empty());
}

// ALTER DATABASE ... SET of who later sessions run as, where their names resolve or how their SQL
// is read: a change of privileges, as ALTER ROLE ... SET is (found by adversarial testing).
TEST(SqlSettings, AlterDatabaseSetOfRoleIsAPrivilegeChange) {
  for (const char* sql : {"ALTER DATABASE postgres SET role = 'other'", "ALTER DATABASE postgres SET search_path = hr",
                          "ALTER DATABASE postgres SET standard_conforming_strings = off",
                          "ALTER DATABASE postgres SET session_authorization = 'x'", "ALTER DATABASE postgres RESET ALL"})
    EXPECT_TRUE(only(analyze_uncached(sql)).role_change) << sql;
  EXPECT_FALSE(only(analyze_uncached("ALTER DATABASE postgres SET timezone = 'UTC'")).role_change);
}

// Round 2 of adversarial testing: DDL that calls set_config later, reads through DDL expressions,
// renames, statistics, and more functions named by DDL.
TEST(SqlDdl, LaterCallsReadsAndRenames) {
  EXPECT_TRUE(only(analyze_uncached("CREATE VIEW sp AS SELECT set_config('search_path', 'hr', false)")).opaque_code);
  EXPECT_TRUE(only(analyze_uncached("CREATE TABLE sp2 (a int, s text DEFAULT set_config('search_path', 'hr', false))"))
                  .opaque_code);
  EXPECT_FALSE(only(analyze_uncached("SELECT set_config('search_path', 'hr', false)")).opaque_code);
  const Statement& gen = only(analyze_uncached("ALTER TABLE customers ADD COLUMN e3 text GENERATED ALWAYS AS (email) STORED"));
  EXPECT_EQ(find(gen, "customers")->columns_read, (Strings{"email"}));
  EXPECT_EQ(find(only(analyze_uncached("ALTER TABLE customers RENAME COLUMN email TO e2")), "customers")->columns_read,
            (Strings{"email"}));
  EXPECT_TRUE(find(only(analyze_uncached("ALTER TABLE customers RENAME TO c2")), "customers")->all_columns);
  EXPECT_EQ(find(only(analyze_uncached("CREATE STATISTICS st ON email, id FROM customers")), "customers")->columns_read,
            (Strings{"email", "id"}));
  EXPECT_EQ(find(only(analyze_uncached("CREATE INDEX ON customers (lower(email))")), "customers")->columns_read,
            (Strings{"email"}));
  for (const char* sql : {"CREATE CONVERSION c FOR 'LATIN1' TO 'UTF8' FROM iso8859_1_to_utf8",
                          "CREATE ACCESS METHOD am TYPE TABLE HANDLER heap_tableam_handler",
                          "CREATE LANGUAGE l HANDLER plpgsql_call_handler", "CREATE TYPE r AS RANGE (subtype = int, subtype_diff = f)",
                          "CREATE TEXT SEARCH TEMPLATE t (INIT = f, LEXIZE = g)"}) {
    EXPECT_TRUE(only(analyze_uncached(sql)).opaque_code) << sql;
    EXPECT_FALSE(only(analyze_uncached(sql)).functions.empty()) << sql;
  }
}

// Ownership and row-level security changes are privilege changes (found by adversarial testing).
TEST(SqlPrivileges, OwnershipAndRowSecurity) {
  for (const char* sql : {"ALTER TABLE t OWNER TO other", "ALTER TABLE t DISABLE ROW LEVEL SECURITY",
                          "ALTER TABLE t NO FORCE ROW LEVEL SECURITY", "ALTER FUNCTION f() OWNER TO other",
                          "CREATE SCHEMA s AUTHORIZATION other", "CREATE POLICY p ON t USING (true)",
                          "ALTER POLICY p ON t USING (true)", "DROP POLICY p ON t"})
    EXPECT_TRUE(only(analyze_uncached(sql)).role_change) << sql;
  for (const char* sql : {"ALTER TABLE t ADD COLUMN c int", "ALTER TABLE t ENABLE ROW LEVEL SECURITY",
                          "CREATE SCHEMA s", "DROP TABLE t", "ALTER VIEW v SET (security_invoker = true)",
                          "ALTER FUNCTION f() SECURITY INVOKER", "SET work_mem = '1MB'"})
    EXPECT_FALSE(only(analyze_uncached(sql)).role_change) << sql;
  // Round 2: what else turns protections off.
  for (const char* sql : {"ALTER FUNCTION f() SECURITY DEFINER", "ALTER PROCEDURE p() SECURITY DEFINER",
                          "ALTER VIEW v SET (security_invoker = false)", "ALTER VIEW v SET (security_barrier = off)",
                          "CREATE VIEW v WITH (security_invoker = false) AS SELECT 1",
                          "ALTER TABLE t DISABLE TRIGGER ALL", "ALTER TABLE t DISABLE TRIGGER audit_t",
                          "SET session_replication_role = replica", "ALTER DATABASE postgres SET row_security = off"})
    EXPECT_TRUE(only(analyze_uncached(sql)).role_change) << sql;
}

// Functions a DDL statement names for the server to call later: as calls with unknown arguments,
// and the statement is opaque code (found by adversarial testing: an aggregate over set_config
// spoofed gatehouse.identity, an operator over pg_read_file read server files).
TEST(SqlFunctions, NamedByDdlCountAsCalled) {
  const Statement& agg = only(analyze_uncached(
      "CREATE AGGREGATE pg_temp.spoof(text, bool) (sfunc = set_config, stype = text, initcond = 'gatehouse.identity')"));
  EXPECT_EQ(agg.settings, Strings{"*"});
  EXPECT_TRUE(agg.opaque_code);
  EXPECT_NE(std::find(agg.functions.begin(), agg.functions.end(), "set_config"), agg.functions.end());
  const Statement& op = only(analyze_uncached("CREATE OPERATOR ### (rightarg = text, function = pg_read_file)"));
  EXPECT_TRUE(op.server_file_access);
  EXPECT_TRUE(op.opaque_code);
  EXPECT_EQ(only(analyze_uncached("CREATE OPERATOR !!! (rightarg = float8, procedure = pg_catalog.pg_sleep)")).functions,
            Strings{"pg_catalog.pg_sleep"});
  EXPECT_EQ(only(analyze_uncached("CREATE CAST (text AS int8) WITH FUNCTION pg_sleep(float8)")).functions,
            Strings{"pg_sleep"});
  EXPECT_TRUE(only(analyze_uncached("ALTER OPERATOR === (int, int) SET (RESTRICT = pg_read_file)")).server_file_access);
  EXPECT_EQ(only(analyze_uncached("CREATE TYPE t2 (input = set_config, output = textout)")).settings, Strings{"*"});
  EXPECT_TRUE(only(analyze_uncached("CREATE FOREIGN DATA WRAPPER w HANDLER dblink_fdw_validator")).remote_access);
  // Every cast changes what later expressions over a type do, in statements that never name it: a
  // cast of a table's row type WITH INOUT made t.bytea (attribute notation) read every column
  // (found by adversarial testing).
  EXPECT_TRUE(only(analyze_uncached("CREATE CAST (int AS text) WITHOUT FUNCTION")).opaque_code);
  EXPECT_TRUE(only(analyze_uncached("CREATE CAST (people AS bytea) WITH INOUT")).opaque_code);
  // Catalog views that print the server's configuration files are server file access.
  for (const char* sql : {"SELECT * FROM pg_file_settings", "SELECT * FROM pg_catalog.pg_hba_file_rules",
                          "TABLE pg_ident_file_mappings"})
    EXPECT_TRUE(only(analyze_uncached(sql)).server_file_access) << sql;
  EXPECT_FALSE(only(analyze_uncached("SELECT * FROM pg_settings")).server_file_access);
  // ts_rewrite(query, text) runs the text as a query.
  EXPECT_TRUE(only(analyze_uncached("SELECT ts_rewrite('a'::tsquery, 'SELECT secret::tsquery FROM secrets')")).opaque_code);
}

// ---------------------------------------------------------------- trivially-true WHERE

// Whether the one write of `sql` has a WHERE (or MERGE ON) that may select every row.
bool flagged(const std::string& sql) {
  const Statement& s = only(analyze_uncached(sql));
  EXPECT_EQ(s.writes.size(), 1u) << sql;
  return !s.writes.empty() && s.writes[0].has_where && s.writes[0].where_trivially_true;
}

bool trivially_true(const std::string& where) { return flagged("DELETE FROM t WHERE " + where); }

TEST(SqlWhere, TriviallyTrue) {
  for (const char* w : {"true", "TRUE", "'t'::bool", "'yes'::boolean", "CAST('on' AS boolean)", "1::bool",
                        "1=1", "'a'='a'", "-1 = -1", "1 < 2", "2 >= 2", "1 <> 2", "id = id", "t.id = t.id",
                        "id IS NOT DISTINCT FROM id", "1 IS NOT DISTINCT FROM 1", "x = 5 OR true",
                        "true AND 1=1", "NOT false", "NOT (1 = 2)", "x IS NOT NULL OR x IS NULL",
                        "NULL IS NULL", "EXISTS (SELECT 1)", "(true)", "true IS TRUE", "'1'::int::text = '1'::int::text",
                        // A condition that references no column of the row is the same for every
                        // row: all of them or none (found by adversarial testing: WHERE 'true').
                        "'true'", "'t'", "coalesce(true, false)", "length('x') = 1", "now() IS NOT NULL",
                        "(SELECT true)", "1 IN (1, 2)", "$1", "$1 = $1", "current_user = 'bob'", "1.0 = 1.00",
                        "'a' < 'b'", "EXISTS (SELECT 1 FROM u)", "EXISTS (SELECT 1 FROM u WHERE u.k = 1)",
                        "(SELECT count(*) FROM u) >= 0", "id = 5 OR 'a' = 'a'", "id = 5 OR length('x') > 0",
                        "CASE WHEN true THEN true END", "random() < 0.5", "random() = random()",
                        "current_setting('app.on') = 'on'", "t2.id = 1", "NOT (u.x = 1)"}) {
    EXPECT_TRUE(trivially_true(w)) << w;
  }
}

TEST(SqlWhere, NotTriviallyTrue) {
  for (const char* w : {"id = 5", "false", "1 = 2", "-1 = -2", "'a' = 'b'", "true AND id = 1", "id = id + 0",
                        "x = y", "NOT true", "a IS NULL OR b IS NOT NULL",
                        "id IS DISTINCT FROM id", "CURRENT OF c", "t.id = 1", "public.t.id = 1",
                        "EXISTS (SELECT 1 FROM u WHERE u.tid = t.id)", "id IN (SELECT tid FROM u)",
                        "t = ROW(1)", "f(t.*)", "id = 5 AND 'a' = 'a'", "(id = 5 OR true) AND id = 6",
                        "false OR id = 1", "NOT (id = 1)"}) {
    EXPECT_FALSE(trivially_true(w)) << w;
  }
}

// Column references count when they can be the target's: by its alias once it has one, by its
// name otherwise; other relations' columns (USING, FROM, subqueries) do not tell its rows apart.
TEST(SqlWhere, RowReferencesByAliasAndOtherRelations) {
  EXPECT_FALSE(flagged("DELETE FROM t AS a WHERE a.id = 1"));
  EXPECT_FALSE(flagged("DELETE FROM t a WHERE EXISTS (SELECT 1 FROM u WHERE u.tid = a.id)"));
  EXPECT_TRUE(flagged("DELETE FROM t a WHERE EXISTS (SELECT 1 FROM u WHERE u.k = 1)"));
  EXPECT_FALSE(flagged("DELETE FROM s.t WHERE s.t.id = 1"));
  EXPECT_FALSE(flagged("DELETE FROM t USING u WHERE t.id = u.id AND u.gone"));
  EXPECT_TRUE(flagged("DELETE FROM t USING u WHERE u.gone"));
  EXPECT_FALSE(flagged("DELETE FROM t USING u WHERE gone"));  // unqualified: may be t's column
  EXPECT_TRUE(flagged("UPDATE t SET a = 1 WHERE current_setting('app.flag') = 'on'"));
  EXPECT_FALSE(flagged("UPDATE t SET a = 1 FROM u WHERE t.id = u.id"));
  EXPECT_TRUE(flagged("UPDATE t SET a = 1 FROM u WHERE u.id = 7"));
  EXPECT_TRUE(flagged("MERGE INTO t USING s ON s.k = 1 WHEN MATCHED THEN DELETE"));
  EXPECT_FALSE(flagged("MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE"));
  EXPECT_FALSE(flagged("MERGE INTO t USING s ON s.k = 1 WHEN MATCHED AND t.id = 3 THEN DELETE"));
}

TEST(SqlWhere, UpdateWhere) {
  const Statement& s = only(analyze_uncached("UPDATE t SET a = 1 WHERE 1 = 1"));
  ASSERT_EQ(s.writes.size(), 1u);
  EXPECT_TRUE(s.writes[0].has_where);
  EXPECT_TRUE(s.writes[0].where_trivially_true);
}

// ---------------------------------------------------------------- tricky text

TEST(SqlTricky, MultiStatementSmuggling) {
  const Analysis a = analyze_uncached("SELECT 1; DROP TABLE t");
  ASSERT_FALSE(a.error);
  ASSERT_EQ(a.statements.size(), 2u);
  EXPECT_TRUE(a.multi_statement());
  EXPECT_EQ(a.statements[0].kinds, std::vector{K::Select});
  EXPECT_EQ(a.statements[0].text, "SELECT 1");
  EXPECT_EQ(a.statements[0].location, 0);
  EXPECT_EQ(a.statements[1].kinds, std::vector{K::Drop});
  EXPECT_EQ(a.statements[1].text, "DROP TABLE t");
  EXPECT_EQ(a.statements[1].location, 10);
  EXPECT_EQ(find(a.statements[1], "t")->access, kDdl);
  EXPECT_NE(a.statements[0].fingerprint, a.statements[1].fingerprint);
}

TEST(SqlTricky, SemicolonsInsideStringsCommentsAndDollarQuotes) {
  const Analysis a = analyze_uncached(
      "/* a; DROP TABLE x; */ SELECT 'x; DROP TABLE y', $q$; DELETE FROM z;$q$, E'\\'; TRUNCATE w' -- ; DROP TABLE v\n");
  ASSERT_FALSE(a.error);
  ASSERT_EQ(a.statements.size(), 1u);
  EXPECT_EQ(a.statements[0].kinds, std::vector{K::Select});
  EXPECT_TRUE(a.statements[0].relations.empty());
}

TEST(SqlTricky, CommentsBetweenStatements) {
  const Analysis a = analyze_uncached("  SELECT 1 ; -- first\n /* second */ UPDATE t SET a = 1;  ");
  ASSERT_EQ(a.statements.size(), 2u);
  EXPECT_EQ(a.statements[0].text, "SELECT 1");
  EXPECT_EQ(a.statements[0].location, 2);
  EXPECT_EQ(a.statements[1].kinds, std::vector{K::Update});
  // A statement's text starts after the previous semicolon: comments before it stay in it.
  EXPECT_EQ(a.statements[1].text, "-- first\n /* second */ UPDATE t SET a = 1");
}

TEST(SqlTricky, EscapeStringsAndUnicodeStrings) {
  const Statement& s = only(analyze_uncached("SELECT E'\\x41\\n', U&'\\0041' FROM t WHERE name = E'O\\'Brien'"));
  EXPECT_EQ(find(s, "t")->columns_read, (Strings{"name"}));
  EXPECT_EQ(s.normalized, "SELECT $1, $2 FROM t WHERE name = $3");
}

// A large statement's literals are replaced from the scanner's tokens: pg_query_normalize held
// ~8 KiB per constant (a 1 MB INSERT ... VALUES would have taken ~2 GB; found by adversarial
// testing). Parameters already in the text keep their numbers.
TEST(SqlNormalize, LargeStatementsInBoundedMemory) {
  std::string sql = "INSERT INTO t VALUES ($1, 'x', 0)";
  for (int i = 0; i < 80000; ++i) sql += ", (1, 'abc', 2.5)";
  // Peak memory, measured in a child process: its high-water mark starts at its size at fork,
  // not at the peak an earlier test reached in this one.
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    rusage before{};
    getrusage(RUSAGE_SELF, &before);
    (void)analyze_uncached(sql);
    rusage after{};
    getrusage(RUSAGE_SELF, &after);
    _exit(after.ru_maxrss - before.ru_maxrss < 600 * 1024 ? 0 : 1);  // KiB, for a 1.3 MB statement
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "over 600 MiB of peak memory";
  const Statement& s = only(analyze_uncached(sql));
  EXPECT_EQ(s.kinds, (std::vector{K::Insert}));
  EXPECT_EQ(s.normalized.substr(0, 50), "INSERT INTO t VALUES ($1, $2, $3), ($4, $5, $6), (");
  EXPECT_EQ(s.normalized.find("abc"), std::string::npos);
  EXPECT_NE(s.normalized.find("$240003"), std::string::npos);
}

TEST(SqlTricky, NonAsciiIdentifiersAndStrings) {
  const Statement& s = only(analyze_uncached("SELECT \"prénom\" FROM \"clients_é\" WHERE ville = 'Zürich'"));
  EXPECT_EQ(find(s, "clients_é")->columns_read, (Strings{"prénom", "ville"}));
}

TEST(SqlTricky, EmptyAndCommentOnly) {
  EXPECT_TRUE(analyze_uncached("").statements.empty());
  EXPECT_FALSE(analyze_uncached("").error);
  EXPECT_TRUE(analyze_uncached("  -- nothing\n/* here */ ;").statements.empty());
}

TEST(SqlTricky, NormalizedAndFingerprint) {
  const Statement& a = only(analyze_uncached("SELECT * FROM t WHERE id = 1"));
  const Statement& b = only(analyze_uncached("select *  from t where id = 42"));
  EXPECT_EQ(a.normalized, "SELECT * FROM t WHERE id = $1");
  EXPECT_NE(a.fingerprint, 0u);
  EXPECT_EQ(a.fingerprint, b.fingerprint);
  EXPECT_NE(a.fingerprint, only(analyze_uncached("SELECT * FROM u WHERE id = 1")).fingerprint);
}

TEST(SqlTricky, NulByteIsAnError) {
  const Analysis a = analyze_uncached(std::string_view("SELECT 1\0; DROP TABLE t", 23));
  ASSERT_TRUE(a.error);
  EXPECT_EQ(a.error->cursor, 9);
  EXPECT_TRUE(a.statements.empty());
}

TEST(SqlTricky, DeepNestingIsBoundedNotACrash) {
  // 600 nested NOTs (three JSON levels each) are analysed, WHERE evaluation included.
  std::string nots;
  for (int i = 0; i < 600; ++i) nots += "NOT ";
  const Statement& s = only(analyze_uncached("DELETE FROM t WHERE " + nots + "true"));
  ASSERT_EQ(s.writes.size(), 1u);
  EXPECT_TRUE(s.writes[0].where_trivially_true);  // an even number of NOTs
  // Deeper trees are a clean error (fail closed), never a stack overflow.
  std::string deeper;
  for (int i = 0; i < 5000; ++i) deeper += "NOT ";
  const Analysis d = analyze_uncached("DELETE FROM t WHERE " + deeper + "true");
  EXPECT_TRUE(d.error);
  EXPECT_TRUE(d.statements.empty());
  std::string sum = "SELECT ";
  for (int i = 0; i < 3000; ++i) sum += "a + ";
  sum += "1 FROM t";
  const Analysis e = analyze_uncached(sum);
  EXPECT_TRUE(e.error);
  // Large texts: a left-deep chain that would overflow libpg_query's own recursion (and cost
  // it seconds) is refused before parsing; large flat statements are analysed.
  std::string chain = "SELECT ";
  for (int i = 0; i < 150000; ++i) chain += "1+";
  chain += "1";
  const Analysis c = analyze_uncached(chain);
  ASSERT_TRUE(c.error);
  EXPECT_NE(c.error->message.find("nested too deeply"), std::string::npos);
  std::string in = "SELECT * FROM t WHERE id IN (0";
  for (int i = 1; i < 20000; ++i) in += "," + std::to_string(i);
  in += ")";
  const Statement& big = only(analyze_uncached(in));
  EXPECT_EQ(find(big, "t")->columns_read, (Strings{"id"}));
  // Parentheses alone add no depth.
  const Analysis p = analyze_uncached("SELECT " + std::string(3000, '(') + "1" + std::string(3000, ')'));
  EXPECT_FALSE(p.error);
}

// ---------------------------------------------------------------- errors

TEST(SqlErrors, ParseErrorWithCursor) {
  const Analysis a = analyze_uncached("SELECT * FORM t");
  ASSERT_TRUE(a.error);
  EXPECT_TRUE(a.statements.empty());
  EXPECT_NE(a.error->message.find("syntax error"), std::string::npos) << a.error->message;
  EXPECT_EQ(a.error->cursor, 10);
}

TEST(SqlErrors, ErrorInSecondStatementRejectsAll) {
  const Analysis a = analyze_uncached("SELECT 1; DROP TABLE");
  ASSERT_TRUE(a.error);
  EXPECT_TRUE(a.statements.empty());
}

TEST(SqlErrors, UnterminatedString) {
  const Analysis a = analyze_uncached("SELECT 'abc");
  ASSERT_TRUE(a.error);
  EXPECT_NE(a.error->message.find("unterminated"), std::string::npos) << a.error->message;
}

// ---------------------------------------------------------------- cache

// Texts without numbers: the exact-text cache (texts with numbers: shape_cache_test.cpp).
TEST(AnalyzerCache, HitReturnsTheSamePointer) {
  Analyzer analyzer;
  auto a = analyzer.analyze("SELECT * FROM t WHERE id = a");
  auto b = analyzer.analyze("SELECT * FROM t WHERE id = a");
  EXPECT_EQ(a.get(), b.get());
  EXPECT_EQ(analyzer.stats().hits, 1u);
  EXPECT_EQ(analyzer.stats().misses, 1u);
  auto c = analyzer.analyze("SELECT * FROM t WHERE id = b");  // a different text
  EXPECT_NE(a.get(), c.get());
}

TEST(AnalyzerCache, EvictsLeastRecentlyUsedByEntries) {
  Analyzer analyzer(2);
  auto a = analyzer.analyze("SELECT a");
  auto b = analyzer.analyze("SELECT b");
  EXPECT_EQ(analyzer.analyze("SELECT a").get(), a.get());  // touch a: b is now the oldest
  auto c = analyzer.analyze("SELECT c");                    // evicts b
  EXPECT_EQ(analyzer.stats().entries, 2u);
  EXPECT_EQ(analyzer.stats().evictions, 1u);
  EXPECT_EQ(analyzer.analyze("SELECT a").get(), a.get());
  EXPECT_NE(analyzer.analyze("SELECT b").get(), b.get());  // re-analysed
  EXPECT_EQ(b->statements.size(), 1u);                      // an evicted result stays valid
}

TEST(AnalyzerCache, EvictsByBytes) {
  Analyzer probe;
  probe.analyze("SELECT a");
  std::size_t one = probe.stats().bytes;
  ASSERT_GT(one, 0u);
  Analyzer analyzer(100, 64 * 1024, one * 3 + one / 2);  // room for three such entries
  for (int i = 0; i < 10; ++i) analyzer.analyze("SELECT col" + std::string(1, char('a' + i)));
  EXPECT_LE(analyzer.stats().bytes, one * 3 + one / 2);
  EXPECT_LE(analyzer.stats().entries, 3u);
  EXPECT_GE(analyzer.stats().evictions, 7u);
}

TEST(AnalyzerCache, OversizedTextIsAnalysedButNotCached) {
  Analyzer analyzer(16, 32);
  std::string big = "SELECT a, b, c, d, e, f FROM some_table WHERE x = 1";
  auto a = analyzer.analyze(big);
  auto b = analyzer.analyze(big);
  EXPECT_NE(a.get(), b.get());
  EXPECT_EQ(analyzer.stats().entries, 0u);
  EXPECT_EQ(a->statements.size(), 1u);
}

TEST(AnalyzerCache, ZeroEntriesDisablesCaching) {
  Analyzer analyzer(0);
  EXPECT_NE(analyzer.analyze("SELECT 1").get(), analyzer.analyze("SELECT 1").get());
}

TEST(AnalyzerCache, ErrorsAreCachedToo) {
  Analyzer analyzer;
  auto a = analyzer.analyze("SELEC 1");
  EXPECT_TRUE(a->error);
  EXPECT_EQ(analyzer.analyze("SELEC 1").get(), a.get());
}

TEST(SqlThreads, AnalyzeUncachedRunsOnManyThreadsAtOnce) {
  // libpg_query keeps its memory contexts per thread; each thread also gets its own arena.
  const std::vector<std::string> texts = {
      "SELECT o.id, c.name FROM orders o JOIN customers c ON c.id = o.customer_id WHERE o.total > 10",
      "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", "UPDATE t SET a = 1 WHERE 1 = 1",
      "SELECT 1; DROP TABLE t", "SELECT * FORM t", std::string(20000, ' ') + "SELECT a FROM big"};
  std::vector<std::string> expected;
  for (const auto& t : texts) expected.push_back(to_json(analyze_uncached(t)));
  std::vector<int> mismatches(4, 0);
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&, i] {
      Analyzer own(8);  // one Analyzer per thread
      for (int round = 0; round < 50; ++round) {
        for (std::size_t k = 0; k < texts.size(); ++k) {
          if (to_json(analyze_uncached(texts[k])) != expected[k]) ++mismatches[static_cast<std::size_t>(i)];
          if (to_json(*own.analyze(texts[k])) != expected[k]) ++mismatches[static_cast<std::size_t>(i)];
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(mismatches, std::vector<int>(4, 0));
}

// ---------------------------------------------------------------- JSON

TEST(SqlJson, StableShape) {
  const std::string j = to_json(analyze_uncached("DELETE FROM s.t WHERE 1=1 RETURNING *"));
  EXPECT_EQ(j,
            "{\n"
            "  \"statements\": [\n"
            "    {\n"
            "      \"kinds\": [\"delete\"],\n"
            "      \"text\": \"DELETE FROM s.t WHERE 1=1 RETURNING *\",\n"
            "      \"normalized\": \"DELETE FROM s.t WHERE $1=$2 RETURNING *\",\n"
            "      \"fingerprint\": \"" +
                [] {
                  char hex[17];
                  std::snprintf(hex, sizeof hex, "%016llx",
                                static_cast<unsigned long long>(
                                    only(analyze_uncached("DELETE FROM s.t WHERE 1=1 RETURNING *")).fingerprint));
                  return std::string(hex);
                }() +
                "\",\n"
                "      \"relations\": [\n"
                "        {\n"
                "          \"schema\": \"s\",\n"
                "          \"name\": \"t\",\n"
                "          \"access\": [\"read\", \"delete\"],\n"
                "          \"all_columns\": true\n"
                "        }\n"
                "      ],\n"
                "      \"writes\": [\n"
                "        {\n"
                "          \"kind\": \"delete\",\n"
                "          \"relation\": \"s.t\",\n"
                "          \"has_where\": true,\n"
                "          \"where_trivially_true\": true\n"
                "        }\n"
                "      ],\n"
                "      \"returning\": true\n"
                "    }\n"
                "  ]\n"
                "}\n");
}

TEST(SqlJson, ErrorShape) {
  EXPECT_EQ(to_json(analyze_uncached("SELECT * FORM t")),
            "{\n  \"error\": {\n    \"message\": \"syntax error at or near \\\"FORM\\\"\",\n    \"cursor\": 10\n  }\n}\n");
}

TEST(SqlJson, EmptyAndInvalidUtf8) {
  EXPECT_EQ(to_json(analyze_uncached("")), "{\n  \"statements\": []\n}\n");
  const std::string j = to_json(analyze_uncached("SELECT '\xff'"));  // never throws
  EXPECT_FALSE(j.empty());
}

}  // namespace
}  // namespace gh::sql

namespace gh::sql {
namespace {

// Found by adversarial testing (policy bypass round of 2026-12-05): each of these moved rows or
// values out of what name-based rules see, or showed classified values in an error.
TEST(SqlBypasses, StatementsThatMoveTablesOutOfRulesAreRoleChanges) {
  for (const char* sql : {"ALTER SCHEMA public RENAME TO pub2", "ALTER TABLE orders SET SCHEMA other",
                          "ALTER TABLE customers INHERIT parent",
                          "ALTER TABLE parent ATTACH PARTITION customers FOR VALUES FROM (0) TO (10)",
                          "ALTER TABLE orders ADD FOREIGN KEY (id) REFERENCES k(id) ON DELETE CASCADE",
                          "ALTER TABLE orders ADD FOREIGN KEY (id) REFERENCES k(id) ON UPDATE SET NULL",
                          "ALTER TABLE orders ENABLE REPLICA TRIGGER audit", "ALTER TABLE orders DISABLE RULE r",
                          "ALTER TABLE orders ENABLE REPLICA RULE r", "ALTER VIEW v RESET (security_invoker)",
                          "ALTER VIEW v RESET (security_barrier)", "CREATE OR REPLACE VIEW v AS SELECT * FROM orders"})
    EXPECT_TRUE(only(analyze_uncached(sql)).role_change) << sql;
  for (const char* sql : {"ALTER TABLE orders ADD FOREIGN KEY (id) REFERENCES k(id)",
                          "CREATE TABLE c (id int REFERENCES orders(id) ON DELETE CASCADE)",
                          "ALTER INDEX parent_idx ATTACH PARTITION child_idx",
                          "CREATE OR REPLACE VIEW v WITH (security_invoker = true) AS SELECT 1",
                          "ALTER TABLE orders ENABLE TRIGGER audit"})
    EXPECT_FALSE(only(analyze_uncached(sql)).role_change) << sql;
}

TEST(SqlBypasses, KeyColumnsOfConstraintsAndIndexesAreRead) {
  const Statement& fk = only(analyze_uncached("ALTER TABLE customers ADD FOREIGN KEY (ssn) REFERENCES t (v)"));
  EXPECT_EQ(find(fk, "customers")->columns_read, (Strings{"ssn"}));
  EXPECT_EQ(find(fk, "t")->columns_read, (Strings{"v"}));
  EXPECT_EQ(find(only(analyze_uncached("CREATE UNIQUE INDEX ON customers (ssn)")), "customers")->columns_read,
            (Strings{"ssn"}));
  EXPECT_EQ(find(only(analyze_uncached("ALTER TABLE customers ADD UNIQUE (email)")), "customers")->columns_read,
            (Strings{"email"}));
  const Statement& ref = only(analyze_uncached("CREATE TABLE t (x text REFERENCES customers (ssn))"));
  EXPECT_EQ(find(ref, "customers")->columns_read, (Strings{"ssn"}));
}

TEST(SqlBypasses, NaturalJoinReadsEveryColumnOfBothSides) {
  const Statement& s = only(analyze_uncached("SELECT name FROM customers NATURAL JOIN (VALUES ('1')) x(ssn)"));
  EXPECT_TRUE(find(s, "customers")->all_columns);
}

TEST(SqlBypasses, PageLevelFunctionsAreOpaque) {
  for (const char* sql : {"SELECT t_data FROM heap_page_items(get_raw_page('secrets', 0))",
                          "SELECT * FROM bt_page_items('customers_ssn_idx', 1)",
                          "SELECT heap_force_kill('orders'::regclass, ARRAY['(0,5)'::tid])"})
    EXPECT_TRUE(only(analyze_uncached(sql)).opaque_code) << sql;
}

}  // namespace
}  // namespace gh::sql
