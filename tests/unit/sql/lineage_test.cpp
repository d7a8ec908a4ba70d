#include "sql/lineage.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

namespace gh::sql {
namespace {

using Names = std::vector<std::string>;

CatalogRelation table(std::uint32_t oid, std::string schema, std::string name, std::vector<std::string> cols,
                      char kind = 'r', std::string definition = {}) {
  CatalogRelation r;
  r.oid = oid;
  r.schema = std::move(schema);
  r.name = std::move(name);
  r.kind = kind;
  r.definition = std::move(definition);
  std::int16_t n = 0;
  for (auto& c : cols) r.columns.push_back(CatalogColumn{++n, std::move(c), 25});
  return r;
}

const Catalog& catalog() {
  static const Catalog c = [] {
    Catalog c;
    c.add(table(100, "public", "customers", {"id", "name", "email", "ssn", "card"}));
    c.add(table(101, "public", "orders", {"id", "customer_id", "amount", "note"}));
    // As pg_get_viewdef writes them.
    c.add(table(102, "public", "customer_contacts", {"id", "name", "email"}, 'v',
                " SELECT customers.id,\n    customers.name,\n    customers.email\n   FROM customers;"));
    c.add(table(103, "public", "contact_emails", {"who", "mail"}, 'v',
                " SELECT customer_contacts.name AS who,\n    lower(customer_contacts.email) AS mail\n   FROM "
                "customer_contacts\n  WHERE customer_contacts.id > 10;"));
    c.add(table(104, "public", "mv_cards", {"id", "card"}, 'm', " SELECT customers.id, customers.card FROM customers;"));
    c.add(table(105, "public", "mv_plain", {"id", "x"}, 'm'));
    c.add(table(106, "hr", "employees", {"id", "name", "salary", "manager_id"}));
    c.add(table(107, "public", "loop_a", {"x"}, 'v', "SELECT x FROM loop_b"));
    c.add(table(108, "public", "loop_b", {"x"}, 'v', "SELECT x FROM loop_a"));
    c.add(table(109, "public", "bad_view", {"a", "b"}, 'v', "SELECT id FROM customers"));
    c.add(table(110, "public", "star_view", {"id", "name", "email", "ssn", "card"}, 'v',
                "SELECT * FROM public.customers"));
    c.add(table(1259, "pg_catalog", "pg_class", {"oid", "relname", "relnamespace"}));
    c.add(table(111, "public", "pg_class", {"fake"}));  // shadowed: pg_catalog comes first
    c.add(table(112, "public", "log", {"id", "payload"}));
    c.set_search_path({"pg_catalog", "public"});
    return c;
  }();
  return c;
}

std::string name_of(SourceColumn s) {
  const CatalogRelation* r = catalog().by_oid(s.relation);
  if (!r) return "?" + std::to_string(s.relation);
  const CatalogColumn* c = r->column_at(s.attnum);
  return (r->schema == "public" ? "" : r->schema + ".") + r->name + "." + (c ? c->name : "?");
}

Names names(const std::vector<SourceColumn>& v) {
  Names out;
  for (auto s : v) out.push_back(name_of(s));
  std::sort(out.begin(), out.end());
  return out;
}

Lineage ok(std::string_view sql) {
  Lineage l = lineage_of(sql, catalog());
  EXPECT_TRUE(l.decided) << sql << ": " << l.why;
  return l;
}

// Sources of each output column, one Names per column.
std::vector<Names> cols(std::string_view sql) {
  Lineage l = ok(sql);
  EXPECT_TRUE(l.returns_rows) << sql;
  std::vector<Names> out;
  for (const auto& c : l.columns) out.push_back(names(c.sources));
  return out;
}

Names col_names(std::string_view sql) {
  Names out;
  for (const auto& c : ok(sql).columns) out.push_back(c.name);
  return out;
}

Names one(std::string_view sql) {
  auto c = cols(sql);
  EXPECT_EQ(c.size(), 1u) << sql;
  return c.empty() ? Names{} : c[0];
}

const Names kCustomers = {"customers.card", "customers.email", "customers.id", "customers.name", "customers.ssn"};

void undecided(std::string_view sql, std::string_view why_part) {
  Lineage l = lineage_of(sql, catalog());
  EXPECT_FALSE(l.decided) << sql;
  EXPECT_NE(l.why.find(why_part), std::string::npos) << sql << ": " << l.why;
}

// ---------------------------------------------------------------------------------------------
// Catalog

TEST(Catalog, FindWalksTheSearchPathInOrder) {
  EXPECT_EQ(catalog().find("", "customers")->oid, 100u);
  EXPECT_EQ(catalog().find("public", "customers")->oid, 100u);
  EXPECT_EQ(catalog().find("", "pg_class")->oid, 1259u);
  EXPECT_EQ(catalog().find("public", "pg_class")->oid, 111u);
  EXPECT_EQ(catalog().find("", "employees"), nullptr);  // hr is not on the path
  EXPECT_EQ(catalog().find("hr", "employees")->oid, 106u);
  EXPECT_EQ(catalog().find("", "Customers"), nullptr);  // exact names
  EXPECT_EQ(catalog().by_oid(101)->name, "orders");
  EXPECT_EQ(catalog().by_oid(999), nullptr);
}

TEST(Catalog, ColumnsByNameAndAttnumWithGaps) {
  CatalogRelation r;
  r.columns = {{1, "a", 23}, {3, "c", 23}};  // attnum 2 was dropped
  EXPECT_EQ(r.column("c")->attnum, 3);
  EXPECT_EQ(r.column_at(3)->name, "c");
  EXPECT_EQ(r.column_at(2), nullptr);
  EXPECT_EQ(r.column("b"), nullptr);
}

TEST(Catalog, AddingAgainReplaces) {
  Catalog c;
  c.set_search_path({"public"});
  c.add(table(1, "public", "t", {"a"}));
  c.add(table(1, "public", "t2", {"a", "b"}));
  EXPECT_EQ(c.size(), 1u);
  EXPECT_EQ(c.find("", "t"), nullptr);
  EXPECT_EQ(c.find("", "t2")->columns.size(), 2u);
}

// ---------------------------------------------------------------------------------------------
// Plain columns and names

TEST(Lineage, PlainAliasedAndQualifiedColumns) {
  EXPECT_EQ(cols("SELECT id, ssn FROM customers"), (std::vector<Names>{{"customers.id"}, {"customers.ssn"}}));
  EXPECT_EQ(one("SELECT c.ssn AS x FROM customers c"), Names{"customers.ssn"});
  EXPECT_EQ(one("SELECT public.customers.email FROM customers"), Names{"customers.email"});
  EXPECT_EQ(one("SELECT customers.email FROM public.customers"), Names{"customers.email"});
  EXPECT_EQ(one("SELECT hr.employees.salary FROM hr.employees"), Names{"hr.employees.salary"});
  EXPECT_EQ(one("SELECT relname FROM pg_class"), Names{"pg_catalog.pg_class.relname"});
  EXPECT_EQ(one("SELECT fake FROM public.pg_class"), Names{"pg_class.fake"});
  EXPECT_EQ(col_names("SELECT id, c.ssn AS x, lower(email), 1, id::text FROM customers c"),
            (Names{"id", "x", "lower", "?column?", "id"}));
}

TEST(Lineage, UnqualifiedNamesAcrossFromItems) {
  EXPECT_EQ(one("SELECT ssn FROM customers, orders"), Names{"customers.ssn"});
  EXPECT_EQ(one("SELECT amount FROM customers, orders"), Names{"orders.amount"});
  // Ambiguous (an error for the server): every candidate.
  EXPECT_EQ(one("SELECT id FROM customers, orders"), (Names{"customers.id", "orders.id"}));
  EXPECT_EQ(one("SELECT name FROM customers JOIN hr.employees e ON true"), (Names{"customers.name", "hr.employees.name"}));
}

TEST(Lineage, CorrelatedAndLateralScopes) {
  EXPECT_EQ(one("SELECT (SELECT max(amount) FROM orders o WHERE o.customer_id = c.id AND ssn IS NOT NULL) "
                "FROM customers c"),
            Names{"orders.amount"});
  // An outer column as the subquery's value.
  EXPECT_EQ(one("SELECT (SELECT ssn FROM orders LIMIT 1) FROM customers"), Names{"customers.ssn"});
  EXPECT_EQ(cols("SELECT x.s FROM customers c, LATERAL (SELECT c.ssn AS s) x"), (std::vector<Names>{{"customers.ssn"}}));
  EXPECT_EQ(one("SELECT l.v FROM customers c CROSS JOIN LATERAL (SELECT email || note AS v FROM orders) l"),
            (Names{"customers.email", "orders.note"}));
}

TEST(Lineage, UnknownColumnsAndRelationsAreUndecided) {
  undecided("SELECT nope FROM customers", "column \"nope\"");
  undecided("SELECT * FROM secrets", "relation \"secrets\" is not in the catalog");
  undecided("SELECT * FROM hr.customers", "\"hr.customers\"");
  undecided("SELECT * FROM employees", "employees");  // not on the search path
  undecided("SELECT x FROM (SELECT id FROM customers) s", "column \"x\"");
}

// ---------------------------------------------------------------------------------------------
// Expressions

TEST(Lineage, ExpressionsUnionEveryColumnInside) {
  EXPECT_EQ(one("SELECT lower(email) FROM customers"), Names{"customers.email"});
  EXPECT_EQ(one("SELECT ssn::text FROM customers"), Names{"customers.ssn"});
  EXPECT_EQ(one("SELECT CAST(ssn AS varchar(3)) FROM customers"), Names{"customers.ssn"});
  EXPECT_EQ(one("SELECT id + 1 FROM customers"), Names{"customers.id"});
  EXPECT_EQ(one("SELECT ssn || '' FROM customers"), Names{"customers.ssn"});
  EXPECT_EQ(one("SELECT coalesce(null, card, name) FROM customers"), (Names{"customers.card", "customers.name"}));
  EXPECT_EQ(one("SELECT CASE WHEN id > 1 THEN ssn ELSE 'x' END FROM customers"), (Names{"customers.id", "customers.ssn"}));
  EXPECT_EQ(one("SELECT CASE card WHEN '1' THEN 'a' END FROM customers"), Names{"customers.card"});
  EXPECT_EQ(one("SELECT nullif(ssn, '') FROM customers"), Names{"customers.ssn"});
  EXPECT_EQ(one("SELECT greatest(ssn, card) FROM customers"), (Names{"customers.card", "customers.ssn"}));
  EXPECT_EQ(one("SELECT format('%s-%s', name, ssn) FROM customers"), (Names{"customers.name", "customers.ssn"}));
  EXPECT_EQ(one("SELECT concat(name, card) FROM customers"), (Names{"customers.card", "customers.name"}));
  EXPECT_EQ(one("SELECT substr(ssn, 1, 3) FROM customers"), Names{"customers.ssn"});
  EXPECT_EQ(one("SELECT ROW(name, ssn) FROM customers"), (Names{"customers.name", "customers.ssn"}));
  EXPECT_EQ(one("SELECT ARRAY[email, card] FROM customers"), (Names{"customers.card", "customers.email"}));
  EXPECT_EQ(one("SELECT (ARRAY[ssn])[1] FROM customers"), Names{"customers.ssn"});
  EXPECT_EQ(one("SELECT (ROW(ssn, name)).f1 FROM customers"), (Names{"customers.name", "customers.ssn"}));
  EXPECT_EQ(one("SELECT ssn COLLATE \"C\" FROM customers"), Names{"customers.ssn"});
  EXPECT_EQ(one("SELECT ssn IS DISTINCT FROM card FROM customers"), (Names{"customers.card", "customers.ssn"}));
  EXPECT_EQ(one("SELECT ssn BETWEEN name AND 'z' FROM customers"), (Names{"customers.name", "customers.ssn"}));
  EXPECT_EQ(one("SELECT id IN (1, 2) FROM customers"), Names{"customers.id"});
  EXPECT_EQ(one("SELECT ssn LIKE '1%' FROM customers"), Names{"customers.ssn"});
  EXPECT_EQ(one("SELECT extract(year FROM ssn::date) FROM customers"), Names{"customers.ssn"});
  EXPECT_EQ(one("SELECT jsonb_build_object('k', ssn)->>'k' FROM customers"), Names{"customers.ssn"});
  EXPECT_EQ(one("SELECT xmlelement(name x, ssn) FROM customers"), Names{"customers.ssn"});
  EXPECT_EQ(one("SELECT my_schema.my_func(a => ssn) FROM customers"), Names{"customers.ssn"});
}

TEST(Lineage, ConstantsAndParametersHaveNoSources) {
  EXPECT_EQ(cols("SELECT 1, 'a', $1, now(), current_user"), (std::vector<Names>{{}, {}, {}, {}, {}}));
  EXPECT_EQ(col_names("SELECT 1, now(), current_user, $1"), (Names{"?column?", "now", "current_user", "?column?"}));
  EXPECT_EQ(one("SELECT $1 || ssn FROM customers WHERE id = $2"), Names{"customers.ssn"});
}

TEST(Lineage, AggregatesAndWindows) {
  EXPECT_EQ(one("SELECT count(*) FROM customers"), Names{});
  EXPECT_EQ(one("SELECT count(ssn) FROM customers"), Names{"customers.ssn"});
  EXPECT_EQ(one("SELECT string_agg(ssn, ',') FROM customers"), Names{"customers.ssn"});
  EXPECT_EQ(one("SELECT array_agg(email ORDER BY card) FROM customers"), (Names{"customers.card", "customers.email"}));
  EXPECT_EQ(one("SELECT json_agg(name) FILTER (WHERE ssn LIKE '1%') FROM customers"),
            (Names{"customers.name", "customers.ssn"}));
  EXPECT_EQ(one("SELECT count(*) FILTER (WHERE ssn LIKE '1%') FROM customers"), Names{"customers.ssn"});
  EXPECT_EQ(one("SELECT first_value(name) OVER (PARTITION BY card ORDER BY ssn) FROM customers"),
            (Names{"customers.card", "customers.name", "customers.ssn"}));
  EXPECT_EQ(one("SELECT sum(id) OVER w FROM customers WINDOW w AS (PARTITION BY ssn)"),
            (Names{"customers.id", "customers.ssn"}));
  Lineage l = ok("SELECT row_number() OVER (ORDER BY ssn) FROM customers");
  EXPECT_EQ(names(l.filtered), Names{"customers.ssn"});
}

// ---------------------------------------------------------------------------------------------
// Stars and whole rows

TEST(Lineage, StarExpandsEveryColumn) {
  auto c = cols("SELECT * FROM customers");
  ASSERT_EQ(c.size(), 5u);
  EXPECT_EQ(c[3], Names{"customers.ssn"});
  EXPECT_EQ(col_names("SELECT * FROM customers"), (Names{"id", "name", "email", "ssn", "card"}));
  EXPECT_EQ(cols("SELECT o.*, c.ssn FROM customers c, orders o").size(), 5u);
  EXPECT_EQ(cols("SELECT public.customers.* FROM customers").size(), 5u);
  EXPECT_EQ(cols("TABLE customers").size(), 5u);
  EXPECT_EQ(cols("SELECT * FROM customers c, orders o").size(), 9u);
  // Column aliases rename by position.
  EXPECT_EQ(col_names("SELECT * FROM orders AS o(a, b)"), (Names{"a", "b", "amount", "note"}));
  EXPECT_EQ(one("SELECT b FROM orders AS o(a, b)"), Names{"orders.customer_id"});
  undecided("SELECT *", "no FROM");
}

TEST(Lineage, StarOverJoinsMergesUsingColumns) {
  auto c = cols("SELECT * FROM customers JOIN orders USING (id)");
  ASSERT_EQ(c.size(), 8u);
  EXPECT_EQ(c[0], (Names{"customers.id", "orders.id"}));
  EXPECT_EQ(col_names("SELECT * FROM customers NATURAL JOIN orders")[0], "id");
  EXPECT_EQ(cols("SELECT * FROM customers NATURAL JOIN orders").size(), 8u);
  EXPECT_EQ(one("SELECT id FROM customers JOIN orders USING (id)"), (Names{"customers.id", "orders.id"}));
  auto j = cols("SELECT j.* FROM (customers c JOIN orders o ON o.customer_id = c.id) AS j");
  EXPECT_EQ(j.size(), 9u);
  EXPECT_EQ(one("SELECT j.ssn FROM (customers c JOIN orders o ON o.customer_id = c.id) AS j"), Names{"customers.ssn"});
  EXPECT_EQ(cols("SELECT * FROM customers c LEFT JOIN orders o ON o.customer_id = c.id JOIN hr.employees e ON e.id = c.id")
                .size(),
            13u);
}

TEST(Lineage, WholeRowReferences) {
  EXPECT_EQ(one("SELECT c FROM customers c"), kCustomers);
  EXPECT_EQ(one("SELECT row_to_json(c) FROM customers c"), kCustomers);
  EXPECT_EQ(one("SELECT to_jsonb(c.*) FROM customers c"), kCustomers);
  EXPECT_EQ(one("SELECT c.*::text FROM customers c"), kCustomers);
  EXPECT_EQ(one("SELECT customers FROM customers"), kCustomers);
  EXPECT_EQ(one("SELECT c.row_to_json FROM customers c"), kCustomers);  // attribute notation: f(c)
  EXPECT_EQ(one("SELECT count(c.*) FROM customers c"), kCustomers);
  // Field selection from a whole row is that column.
  EXPECT_EQ(one("SELECT (c).email FROM customers c"), Names{"customers.email"});
  EXPECT_EQ(one("SELECT (c.*).ssn FROM customers c"), Names{"customers.ssn"});
  // (c).* expands like c.*; a composite value's .* has unknown columns.
  EXPECT_EQ(cols("SELECT (c).* FROM customers c").size(), 5u);
  undecided("SELECT (json_populate_record(null::customers, '{}')).*", "composite");
  // A whole row inside a subquery, from the outer level.
  EXPECT_EQ(one("SELECT (SELECT c FROM orders LIMIT 1) FROM customers c"), kCustomers);
}

// ---------------------------------------------------------------------------------------------
// Subqueries, CTEs, set operations, VALUES, functions

TEST(Lineage, SubqueriesInFrom) {
  EXPECT_EQ(one("SELECT s.b FROM (SELECT id AS a, ssn AS b FROM customers) s"), Names{"customers.ssn"});
  EXPECT_EQ(one("SELECT y FROM (SELECT id, ssn FROM customers) AS s(x, y)"), Names{"customers.ssn"});
  EXPECT_EQ(cols("SELECT * FROM (SELECT email FROM customers) s").size(), 1u);
  EXPECT_EQ(one("SELECT s FROM (SELECT email, card FROM customers) s"), (Names{"customers.card", "customers.email"}));
}

TEST(Lineage, Sublinks) {
  EXPECT_EQ(one("SELECT (SELECT ssn FROM customers LIMIT 1)"), Names{"customers.ssn"});
  EXPECT_EQ(one("SELECT ARRAY(SELECT card FROM customers)"), Names{"customers.card"});
  EXPECT_EQ(col_names("SELECT ARRAY(SELECT card FROM customers), (SELECT ssn FROM customers LIMIT 1)"),
            (Names{"array", "ssn"}));
  // EXISTS gives no data, but reads and filters.
  Lineage l = ok("SELECT EXISTS (SELECT 1 FROM customers WHERE ssn = '1') AS e");
  EXPECT_EQ(names(l.columns[0].sources), Names{});
  EXPECT_EQ(names(l.filtered), Names{"customers.ssn"});
  Lineage in = ok("SELECT id FROM orders WHERE customer_id IN (SELECT id FROM customers WHERE card IS NOT NULL)");
  EXPECT_EQ(names(in.columns[0].sources), Names{"orders.id"});
  EXPECT_EQ(names(in.filtered), (Names{"customers.card", "customers.id", "orders.customer_id"}));
  EXPECT_EQ(names(in.read), (Names{"customers.card", "customers.id", "orders.customer_id", "orders.id"}));
}

TEST(Lineage, Ctes) {
  EXPECT_EQ(one("WITH x AS (SELECT ssn FROM customers) SELECT ssn FROM x"), Names{"customers.ssn"});
  EXPECT_EQ(one("WITH x(a) AS (SELECT ssn FROM customers) SELECT a FROM x"), Names{"customers.ssn"});
  EXPECT_EQ(one("WITH x AS (SELECT email FROM customers), y AS (SELECT upper(email) AS e FROM x) SELECT e FROM y"),
            Names{"customers.email"});
  EXPECT_EQ(one("WITH x AS (SELECT card FROM customers) SELECT (WITH y AS (SELECT card FROM x) SELECT max(card) FROM y)"),
            Names{"customers.card"});
  // A CTE shadows a table of the same name; a qualified name does not see it.
  EXPECT_EQ(one("WITH orders AS (SELECT ssn AS note FROM customers) SELECT note FROM orders"), Names{"customers.ssn"});
  EXPECT_EQ(one("WITH orders AS (SELECT ssn AS note FROM customers) SELECT note FROM public.orders"),
            Names{"orders.note"});
}

TEST(Lineage, RecursiveCtes) {
  // The recursive arm carries ssn into n over iterations.
  EXPECT_EQ(one("WITH RECURSIVE t(n, s) AS (SELECT id, name FROM customers UNION ALL "
                "SELECT n + 1, s || ssn FROM t, customers WHERE n < 3) SELECT s FROM t"),
            (Names{"customers.name", "customers.ssn"}));
  // Sources flow between columns over several passes: a -> b -> c.
  EXPECT_EQ(one("WITH RECURSIVE t(a, b, c) AS (SELECT ssn, '', '' FROM customers UNION ALL "
                "SELECT a, a, b FROM t) SELECT c FROM t"),
            Names{"customers.ssn"});
  EXPECT_EQ(cols("WITH RECURSIVE t AS (SELECT id, manager_id FROM hr.employees UNION SELECT t.* FROM t) SELECT * FROM t")
                .size(),
            2u);
  auto c = cols("WITH RECURSIVE t(n) AS (SELECT id FROM customers UNION ALL SELECT n FROM t) "
                "SEARCH DEPTH FIRST BY n SET ord CYCLE n SET is_cycle USING path SELECT * FROM t");
  ASSERT_EQ(c.size(), 4u);
  EXPECT_EQ(c[3], Names{"customers.id"});
  undecided("WITH RECURSIVE a AS (SELECT * FROM b), b AS (SELECT 1) SELECT * FROM a", "before it is defined");
}

TEST(Lineage, DataModifyingCtes) {
  Lineage l = ok("WITH d AS (DELETE FROM customers WHERE id = 1 RETURNING *) SELECT * FROM d");
  ASSERT_EQ(l.columns.size(), 5u);
  EXPECT_EQ(names(l.columns[3].sources), Names{"customers.ssn"});
  Lineage i = ok("WITH x AS (INSERT INTO log (payload) SELECT ssn FROM customers RETURNING id) SELECT 1");
  EXPECT_EQ(names(i.stored), Names{"customers.ssn"});
}

TEST(Lineage, SetOperations) {
  EXPECT_EQ(cols("SELECT id, ssn FROM customers UNION SELECT id, note FROM orders"),
            (std::vector<Names>{{"customers.id", "orders.id"}, {"customers.ssn", "orders.note"}}));
  EXPECT_EQ(one("SELECT ssn FROM customers INTERSECT ALL SELECT note FROM orders"), (Names{"customers.ssn", "orders.note"}));
  EXPECT_EQ(one("SELECT ssn FROM customers EXCEPT SELECT note FROM orders ORDER BY 1"),
            (Names{"customers.ssn", "orders.note"}));
  EXPECT_EQ(one("(SELECT email FROM customers UNION SELECT note FROM orders) UNION SELECT 'x'"),
            (Names{"customers.email", "orders.note"}));
  Lineage l = ok("SELECT ssn FROM customers UNION SELECT note FROM orders ORDER BY ssn");
  EXPECT_EQ(names(l.filtered), (Names{"customers.ssn", "orders.note"}));
  undecided("SELECT id, ssn FROM customers UNION SELECT id FROM orders", "different numbers");
}

TEST(Lineage, Values) {
  EXPECT_EQ(cols("VALUES (1, 'a'), (2, 'b')"), (std::vector<Names>{{}, {}}));
  EXPECT_EQ(col_names("VALUES (1, 'a')"), (Names{"column1", "column2"}));
  EXPECT_EQ(one("SELECT v.x FROM customers c, LATERAL (VALUES (c.ssn)) v(x)"), Names{"customers.ssn"});
  EXPECT_EQ(one("SELECT b FROM (VALUES (1, 'a')) AS v(a, b)"), Names{});
  EXPECT_EQ(one("SELECT (VALUES ((SELECT max(ssn) FROM customers)))"), Names{"customers.ssn"});
}

TEST(Lineage, FunctionsInFrom) {
  EXPECT_EQ(cols("SELECT * FROM generate_series(1, 3)"), (std::vector<Names>{{}}));
  EXPECT_EQ(col_names("SELECT * FROM generate_series(1, 3) g"), Names{"g"});
  EXPECT_EQ(one("SELECT u FROM customers c, unnest(ARRAY[c.ssn, c.card]) u"), (Names{"customers.card", "customers.ssn"}));
  EXPECT_EQ(one("SELECT u.x FROM customers c, unnest(ARRAY[c.ssn]) AS u(x)"), Names{"customers.ssn"});
  EXPECT_EQ(cols("SELECT * FROM customers c, unnest(ARRAY[c.ssn], ARRAY[c.id]) AS u(a, b)").size(), 7u);
  auto j = cols("SELECT r.* FROM customers c, json_to_record(row_to_json(c)) AS r(ssn text, n int)");
  ASSERT_EQ(j.size(), 2u);
  EXPECT_EQ(j[0], kCustomers);
  EXPECT_EQ(cols("SELECT * FROM customers c, jsonb_each(to_jsonb(c)) e").size(), 7u);
  EXPECT_EQ(one("SELECT e.value FROM customers c, jsonb_each(to_jsonb(c)) e"), kCustomers);
  EXPECT_EQ(one("SELECT v FROM customers c, jsonb_array_elements(jsonb_build_array(c.email)) AS x(v)"),
            Names{"customers.email"});
  // WITH ORDINALITY adds a column without sources.
  EXPECT_EQ(cols("SELECT * FROM customers c, unnest(ARRAY[c.ssn]) WITH ORDINALITY AS u(v, n)").back(), Names{});
  // A function whose columns are not known: named columns are its arguments, `*` is undecided.
  EXPECT_EQ(one("SELECT f.anything FROM customers c, my_func(c.ssn) f"), Names{"customers.ssn"});
  EXPECT_EQ(one("SELECT f FROM customers c, my_func(c.ssn) f"), Names{"customers.ssn"});
  undecided("SELECT * FROM my_func(1)", "my_func");
  EXPECT_EQ(one("SELECT a FROM ROWS FROM (json_to_record('{}') AS (a int), generate_series(1, 2)) AS f"), Names{});
  EXPECT_EQ(one("SELECT t.a FROM customers c, XMLTABLE('/r' PASSING (c.email::xml) COLUMNS a text PATH 'x') t"),
            Names{"customers.email"});
}

// ---------------------------------------------------------------------------------------------
// Views

TEST(Lineage, ViewsAreTracedToTheirTables) {
  EXPECT_EQ(cols("SELECT * FROM customer_contacts"),
            (std::vector<Names>{{"customers.id"}, {"customers.name"}, {"customers.email"}}));
  EXPECT_EQ(one("SELECT email FROM public.customer_contacts v"), Names{"customers.email"});
  // A view over a view; its WHERE counts as read and filtered.
  Lineage l = ok("SELECT mail FROM contact_emails");
  EXPECT_EQ(names(l.columns[0].sources), Names{"customers.email"});
  EXPECT_EQ(names(l.filtered), Names{"customers.id"});
  EXPECT_EQ(col_names("SELECT * FROM contact_emails"), (Names{"who", "mail"}));
  EXPECT_EQ(one("SELECT v FROM customer_contacts v"), (Names{"customers.email", "customers.id", "customers.name"}));
  EXPECT_EQ(cols("SELECT * FROM star_view")[3], Names{"customers.ssn"});
  // The same view twice.
  EXPECT_EQ(cols("SELECT a.email, b.name FROM customer_contacts a JOIN customer_contacts b USING (id)").size(), 2u);
}

TEST(Lineage, MaterializedViews) {
  // Its own column and where its data came from.
  EXPECT_EQ(one("SELECT card FROM mv_cards"), (Names{"customers.card", "mv_cards.card"}));
  EXPECT_EQ(one("SELECT x FROM mv_plain"), Names{"mv_plain.x"});
}

TEST(Lineage, BadViewsAreUndecided) {
  undecided("SELECT * FROM loop_a", "refers to itself");
  undecided("SELECT * FROM bad_view", "does not match");
  Catalog c;
  c.set_search_path({"public"});
  c.add(table(1, "public", "t", {"a"}));
  std::string prev = "t";
  for (int i = 0; i < 20; ++i) {
    std::string name = "v" + std::to_string(i);
    c.add(table(static_cast<std::uint32_t>(10 + i), "public", name, {"a"}, 'v', "SELECT a FROM " + prev));
    prev = name;
  }
  Lineage deep = lineage_of("SELECT a FROM v19", c);
  EXPECT_FALSE(deep.decided);
  EXPECT_NE(deep.why.find("nested too deeply"), std::string::npos) << deep.why;
  Lineage fine = lineage_of("SELECT a FROM v10", c);
  EXPECT_TRUE(fine.decided) << fine.why;
  ASSERT_EQ(fine.columns.size(), 1u);
  EXPECT_EQ(fine.columns[0].sources, (std::vector<SourceColumn>{{1, 1}}));
}

TEST(Lineage, ViewEdgeCases) {
  // Only the view columns used are read (plus what the view filters on).
  EXPECT_EQ(names(ok("SELECT id FROM customer_contacts").read), Names{"customers.id"});
  EXPECT_EQ(names(ok("SELECT who FROM contact_emails").read), (Names{"customers.id", "customers.name"}));
  // A view without a column list in the catalog takes its definition's names.
  Catalog c;
  c.set_search_path({"public"});
  c.add(table(1, "public", "t", {"a", "b"}));
  c.add(table(2, "public", "v", {}, 'v', "SELECT b AS x, a FROM t"));
  Lineage l = lineage_of("SELECT x FROM v", c);
  ASSERT_TRUE(l.decided) << l.why;
  EXPECT_EQ(l.columns[0].sources, (std::vector<SourceColumn>{{1, 2}}));
  // A view's definition does not see the referencing statement's CTEs.
  EXPECT_EQ(one("WITH customers AS (SELECT 1 AS id, 2 AS name, 3 AS email) SELECT email FROM customer_contacts"),
            Names{"customers.email"});
  // COPY of a view is traced like a SELECT from it.
  EXPECT_EQ(names(ok("COPY customer_contacts TO STDOUT").columns[2].sources), Names{"customers.email"});
  EXPECT_EQ(names(ok("CREATE SCHEMA s CREATE VIEW v AS SELECT ssn FROM public.customers").stored), Names{"customers.ssn"});
  // INSERT through a view: RETURNING shows base columns and inserted values.
  Lineage ins = ok("INSERT INTO customer_contacts (id, email) SELECT id, ssn FROM customers RETURNING email");
  EXPECT_EQ(names(ins.columns[0].sources), (Names{"customers.email", "customers.ssn"}));
}

TEST(Lineage, MoreScopes) {
  EXPECT_EQ(one("SELECT lower(ssn) AS s FROM customers GROUP BY s"), Names{"customers.ssn"});
  EXPECT_EQ(one("SELECT x FROM customers c, my_func(c.ssn) AS f(x, y)"), Names{"customers.ssn"});
  EXPECT_EQ(one("SELECT ssn FROM customers TABLESAMPLE SYSTEM (10)"), Names{"customers.ssn"});
  EXPECT_EQ(one("SELECT c.card FROM customers c WHERE EXISTS (SELECT 1) AND c.id IN (SELECT customer_id FROM orders) "
                "UNION SELECT (SELECT max(x.n) FROM (SELECT o.note AS n FROM orders o2 JOIN orders o3 USING (id)) x) "
                "FROM orders o"),
            (Names{"customers.card", "orders.note"}));
  undecided("WITH x AS (SELECT 1 AS a) SELECT b FROM x", "column \"b\"");
  // t.f where t has no column f is f(t) for the server: the whole row.
  EXPECT_EQ(one("SELECT o.nope FROM orders o"), (Names{"orders.amount", "orders.customer_id", "orders.id", "orders.note"}));
  undecided("SELECT 1 FROM orders o JOIN customers c USING (nope2)", "nope2");
  // A subquery in FROM does not see its siblings without LATERAL: the name goes outward.
  undecided("SELECT * FROM customers c, (SELECT c.ssn) x", "column \"c.ssn\"");
}

// ---------------------------------------------------------------------------------------------
// read and filtered

TEST(Lineage, ReadAndFiltered) {
  Lineage l = ok(
      "SELECT DISTINCT ON (c.card) c.name FROM customers c JOIN orders o ON o.customer_id = c.id "
      "WHERE c.ssn LIKE '1%' GROUP BY c.card, c.name, c.email HAVING count(o.note) > 1 ORDER BY c.card, c.email "
      "LIMIT (SELECT count(amount) FROM orders)");
  EXPECT_EQ(names(l.columns[0].sources), Names{"customers.name"});
  EXPECT_EQ(names(l.filtered), (Names{"customers.card", "customers.email", "customers.id", "customers.name",
                                      "customers.ssn", "orders.amount", "orders.customer_id", "orders.note"}));
  EXPECT_EQ(names(l.read), names(l.filtered));
  // ORDER BY an output alias or ordinal filters on what it names.
  Lineage o = ok("SELECT lower(ssn) AS s, id FROM customers ORDER BY s, 2");
  EXPECT_EQ(names(o.filtered), (Names{"customers.id", "customers.ssn"}));
  Lineage u = ok("SELECT 1 FROM customers JOIN orders USING (id)");
  EXPECT_EQ(names(u.filtered), (Names{"customers.id", "orders.id"}));
  EXPECT_TRUE(u.stored.empty());
}

// ---------------------------------------------------------------------------------------------
// Writes, RETURNING, stored

TEST(Lineage, InsertStoresItsSource) {
  Lineage l = ok("INSERT INTO log (payload) SELECT ssn FROM customers WHERE card IS NOT NULL");
  EXPECT_FALSE(l.returns_rows);
  EXPECT_TRUE(l.columns.empty());
  EXPECT_EQ(names(l.stored), Names{"customers.ssn"});
  EXPECT_EQ(names(l.filtered), Names{"customers.card"});
  EXPECT_TRUE(ok("INSERT INTO log VALUES (1, 'x')").stored.empty());
  // RETURNING shows what was inserted.
  Lineage r = ok("INSERT INTO log (payload) SELECT ssn FROM customers RETURNING payload, id");
  EXPECT_TRUE(r.returns_rows);
  ASSERT_EQ(r.columns.size(), 2u);
  EXPECT_EQ(names(r.columns[0].sources), (Names{"customers.ssn", "log.payload"}));
  EXPECT_EQ(names(r.columns[1].sources), Names{"log.id"});
  Lineage star = ok("INSERT INTO log VALUES (1, 'x') RETURNING *");
  EXPECT_EQ(star.columns.size(), 2u);
  Lineage oc = ok(
      "INSERT INTO log AS l (id, payload) SELECT id, email FROM customers ON CONFLICT (id) DO UPDATE SET payload = "
      "excluded.payload || l.payload WHERE l.id > 0 RETURNING payload");
  EXPECT_EQ(names(oc.columns[0].sources), (Names{"customers.email", "log.payload"}));
  EXPECT_EQ(names(oc.stored), (Names{"customers.email", "customers.id", "log.payload"}));
  undecided("INSERT INTO log (nope) VALUES (1)", "nope");
}

TEST(Lineage, UpdateDeleteMerge) {
  Lineage u = ok("UPDATE log SET payload = c.ssn FROM customers c WHERE c.id = log.id RETURNING log.payload, c.name");
  EXPECT_EQ(names(u.stored), Names{"customers.ssn"});
  ASSERT_EQ(u.columns.size(), 2u);
  EXPECT_EQ(names(u.columns[0].sources), (Names{"customers.ssn", "log.payload"}));
  EXPECT_EQ(names(u.columns[1].sources), Names{"customers.name"});
  EXPECT_EQ(names(u.filtered), (Names{"customers.id", "log.id"}));
  Lineage m = ok("UPDATE log SET (id, payload) = (SELECT id, card FROM customers LIMIT 1)");
  EXPECT_EQ(names(m.stored), (Names{"customers.card", "customers.id"}));
  EXPECT_FALSE(m.returns_rows);
  Lineage d = ok("DELETE FROM customers c USING orders o WHERE o.customer_id = c.id RETURNING c.ssn, o.*");
  ASSERT_EQ(d.columns.size(), 5u);
  EXPECT_EQ(names(d.columns[0].sources), Names{"customers.ssn"});
  EXPECT_TRUE(d.stored.empty());
  Lineage mg = ok(
      "MERGE INTO log l USING customers c ON l.id = c.id WHEN MATCHED AND c.card IS NULL THEN UPDATE SET payload = "
      "c.email WHEN NOT MATCHED THEN INSERT (id, payload) VALUES (c.id, c.ssn)");
  EXPECT_FALSE(mg.returns_rows);
  EXPECT_EQ(names(mg.stored), (Names{"customers.email", "customers.id", "customers.ssn"}));
  EXPECT_EQ(names(mg.filtered), (Names{"customers.card", "customers.id", "log.id"}));
  // Through an updatable view.
  Lineage v = ok("UPDATE customer_contacts SET name = 'x' WHERE id = 1 RETURNING email");
  EXPECT_EQ(names(v.columns[0].sources), Names{"customers.email"});
}

TEST(Lineage, CreateAsCopyAndView) {
  Lineage ctas = ok("CREATE TABLE x AS SELECT name, ssn FROM customers");
  EXPECT_FALSE(ctas.returns_rows);
  EXPECT_EQ(names(ctas.stored), (Names{"customers.name", "customers.ssn"}));
  EXPECT_EQ(names(ok("SELECT card INTO tmp FROM customers").stored), Names{"customers.card"});
  EXPECT_FALSE(ok("SELECT card INTO tmp FROM customers").returns_rows);
  EXPECT_EQ(names(ok("CREATE MATERIALIZED VIEW mv AS SELECT email FROM customer_contacts").stored),
            Names{"customers.email"});
  Lineage view = ok("CREATE VIEW v AS SELECT upper(ssn) FROM customers");
  EXPECT_EQ(names(view.stored), Names{"customers.ssn"});
  EXPECT_FALSE(view.returns_rows);
  EXPECT_EQ(names(ok("REFRESH MATERIALIZED VIEW mv_cards").stored), (Names{"customers.card", "customers.id",
                                                                          "mv_cards.card", "mv_cards.id"}));

  Lineage file = ok("COPY customers TO '/tmp/x'");
  EXPECT_FALSE(file.returns_rows);
  EXPECT_EQ(names(file.stored), kCustomers);
  EXPECT_EQ(names(ok("COPY (SELECT ssn FROM customers) TO PROGRAM 'cat'").stored), Names{"customers.ssn"});
  Lineage out = ok("COPY customers (email, ssn) TO STDOUT");
  EXPECT_TRUE(out.returns_rows);
  EXPECT_TRUE(out.stored.empty());
  ASSERT_EQ(out.columns.size(), 2u);
  EXPECT_EQ(names(out.columns[1].sources), Names{"customers.ssn"});
  Lineage q = ok("COPY (SELECT lower(email) FROM customers) TO STDOUT WITH (FORMAT csv)");
  EXPECT_TRUE(q.returns_rows);
  EXPECT_EQ(names(q.columns[0].sources), Names{"customers.email"});
  Lineage in = ok("COPY customers FROM STDIN");
  EXPECT_FALSE(in.returns_rows);
  EXPECT_TRUE(in.stored.empty());
  EXPECT_EQ(names(ok("SELECT pg_notify('ch', ssn) FROM customers").stored), Names{"customers.ssn"});
  EXPECT_EQ(names(ok("SELECT set_config('my.x', max(card), false) FROM customers").stored), Names{"customers.card"});
  Lineage alter = ok("ALTER TABLE customers ADD COLUMN x text GENERATED ALWAYS AS (ssn || card) STORED");
  EXPECT_EQ(names(alter.stored), (Names{"customers.card", "customers.ssn"}));
}

TEST(Lineage, Wrappers) {
  Lineage cur = ok("DECLARE c CURSOR FOR SELECT ssn FROM customers");
  EXPECT_FALSE(cur.returns_rows);
  ASSERT_EQ(cur.columns.size(), 1u);
  EXPECT_EQ(names(cur.columns[0].sources), Names{"customers.ssn"});
  Lineage prep = ok("PREPARE p(int) AS SELECT email FROM customers WHERE id = $1");
  EXPECT_FALSE(prep.returns_rows);
  ASSERT_EQ(prep.columns.size(), 1u);
  Lineage ex = ok("EXPLAIN ANALYZE INSERT INTO log (payload) SELECT ssn FROM customers");
  EXPECT_FALSE(ex.returns_rows);
  EXPECT_TRUE(ex.columns.empty());
  EXPECT_EQ(names(ex.stored), Names{"customers.ssn"});
  Lineage ex2 = ok("EXPLAIN SELECT ssn FROM customers WHERE card = '1'");
  EXPECT_TRUE(ex2.columns.empty());
  EXPECT_EQ(names(ex2.read), (Names{"customers.card", "customers.ssn"}));
  EXPECT_EQ(names(ok("EXPLAIN ANALYZE CREATE TABLE t2 AS SELECT ssn FROM customers").stored), Names{"customers.ssn"});
}

TEST(Lineage, UtilityStatements) {
  for (const char* sql : {"SET search_path = x", "BEGIN", "COMMIT", "CREATE TABLE t (a int)", "DROP TABLE customers",
                          "VACUUM customers", "GRANT SELECT ON customers TO bob", "LISTEN x", "MOVE 1 IN c", ""}) {
    Lineage l = lineage_of(sql, catalog());
    EXPECT_TRUE(l.decided) << sql << ": " << l.why;
    EXPECT_FALSE(l.returns_rows) << sql;
    EXPECT_TRUE(l.read.empty() && l.stored.empty()) << sql;
  }
  Lineage show = ok("SHOW search_path");
  EXPECT_TRUE(show.returns_rows);
  ASSERT_EQ(show.columns.size(), 1u);
  EXPECT_TRUE(show.columns[0].sources.empty());
  undecided("FETCH 10 FROM c", "DECLARE");
  undecided("EXECUTE p(1)", "PREPARE");
  undecided("CALL p(1)", "CALL");
  undecided("DO $$BEGIN END$$", "DO");
  undecided("CREATE RULE r AS ON INSERT TO log DO ALSO NOTIFY x", "RULE");
  undecided("SELECT 1; SELECT 2", "several statements");
  undecided("SELECT query_to_xml('SELECT ssn FROM customers', true, false, '')", "query_to_xml");
  undecided("SELECT * FROM dblink('host=x', 'SELECT 1') AS t(a int)", "dblink");
  undecided("SELECT heap_page_items(get_raw_page('customers', 0))", "reads data");
  undecided("SELEC 1", "cannot be parsed");
  undecided(std::string_view("SELECT 1\0", 9), "NUL");
}

TEST(Lineage, DepthAndSizeBounds) {
  // Deep expressions: undecided or decided, never a crash.
  std::string deep = "SELECT ";
  for (int i = 0; i < 900; ++i) deep += "(";
  deep += "ssn";
  for (int i = 0; i < 900; ++i) deep += ")";
  deep += " FROM customers";
  Lineage l = lineage_of(deep, catalog());
  if (l.decided) {
    EXPECT_EQ(names(l.columns[0].sources), Names{"customers.ssn"});
  }
  std::string chain = "SELECT ssn";
  for (int i = 0; i < 3000; ++i) chain += " || ssn";
  chain += " FROM customers";
  Lineage c = lineage_of(chain, catalog());
  EXPECT_FALSE(c.decided);  // over the parse tree's depth bound
  // A large flat statement goes through the big-stack path.
  std::string wide = "SELECT ssn";
  for (int i = 0; i < 3000; ++i) wide += ", card";
  wide += " FROM customers";
  Lineage w = lineage_of(wide, catalog());
  EXPECT_TRUE(w.decided) << w.why;
  EXPECT_EQ(w.columns.size(), 3001u);
}

TEST(Lineage, TypicalSelectIsFast) {
  // Not a timing assertion (tests never assert timings): prints the figure for the report.
  const char* sql =
      "SELECT c.id, c.name, lower(c.email), c.ssn, c.card, o.id, o.amount, o.note, coalesce(o.note, c.name), "
      "count(*) OVER () FROM customers c JOIN orders o ON o.customer_id = c.id WHERE c.id > $1 ORDER BY o.id";
  const int n = 200;
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < n; ++i) ASSERT_TRUE(lineage_of(sql, catalog()).decided);
  auto us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count() / n;
  std::printf("lineage of a 10-column join: %.1f us\n", us);
}

}  // namespace
}  // namespace gh::sql
