// The PostgreSQL JDBC driver (Debian's libpostgresql-jdbc-java) against one server: run by
// tests/e2e/test_jdbc.py through Gatehouse and directly, with URL options that switch the driver's
// modes (server-side prepare, binary transfer, rewritten batches). Arguments: the JDBC URL; the
// environment gives GH_USER, GH_PASSWORD and GH_SUFFIX (a unique table name). Prints one line per
// check, "ok   name" or "FAIL name - SQLSTATE exception", then "all ok" or "N FAILED".
import java.io.StringReader;
import java.io.StringWriter;
import java.sql.*;
import java.util.Objects;
import java.util.Properties;
import java.util.UUID;
import org.postgresql.PGConnection;
import org.postgresql.copy.CopyManager;

public class JdbcChecks {
  static int failures = 0;
  static Connection c;

  interface Check { void run() throws Exception; }

  static void check(String name, Check body) throws SQLException {
    try {
      body.run();
      System.out.println("ok   " + name);
    } catch (Throwable e) {
      failures++;
      String state = e instanceof SQLException ? ((SQLException) e).getSQLState() : "";
      System.out.println("FAIL " + name + " - " + state + " " + e);
    } finally {
      if (!c.getAutoCommit()) {  // a failed check leaves no transaction behind for the next
        c.rollback();
        c.setAutoCommit(true);
      }
    }
  }

  static void eq(Object a, Object b, String what) {
    if (!Objects.equals(a, b)) throw new AssertionError(what + ": got " + a + ", want " + b);
  }

  // Runs `body` with autocommit off, then commits (or rolls back) and turns autocommit on again.
  static void transaction(boolean commit, Check body) throws Exception {
    c.setAutoCommit(false);
    body.run();
    if (commit) c.commit();
    else c.rollback();
    c.setAutoCommit(true);
  }

  // `sql` fails with `state`; the same statement then runs `SELECT after`.
  static void failsThenGoesOn(Statement s, String sql, String state, int after) throws SQLException {
    try {
      s.execute(sql);
      throw new AssertionError("no error from " + sql);
    } catch (SQLException e) {
      eq(e.getSQLState(), state, "SQLSTATE");
    }
    try (ResultSet rs = s.executeQuery("SELECT " + after)) {
      rs.next();
      eq(rs.getInt(1), after, "value after the error");
    }
  }

  static long count(String table) throws SQLException {
    try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery("SELECT count(*) FROM " + table)) {
      rs.next();
      return rs.getLong(1);
    }
  }

  public static void main(String[] args) throws Exception {
    Properties p = new Properties();
    p.setProperty("user", System.getenv("GH_USER"));
    p.setProperty("password", System.getenv("GH_PASSWORD"));
    final String t = "jdbc_t_" + System.getenv("GH_SUFFIX");
    c = DriverManager.getConnection(args[0], p);
    check("database metadata", () -> {
      eq(c.getMetaData().getDatabaseProductName(), "PostgreSQL", "product");
      try (ResultSet rs = c.getMetaData().getTables(null, "pg_catalog", "pg_class", null)) {
        eq(rs.next(), true, "pg_class listed");
      }
    });
    check("statement", () -> {
      try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery("SELECT 1 AS x, 'a' AS y")) {
        rs.next();
        eq(rs.getInt(1), 1, "x");
        eq(rs.getString(2), "a", "y");
      }
    });
    check("prepared statement executed 10 times", () -> {
      try (PreparedStatement ps = c.prepareStatement("SELECT ?::int * 2")) {
        for (int i = 0; i < 10; i++) {
          ps.setInt(1, i);
          try (ResultSet rs = ps.executeQuery()) {
            rs.next();
            eq(rs.getInt(1), i * 2, "value");
          }
        }
      }
    });
    check("batch of 500 inserts in a transaction", () -> {
      try (Statement s = c.createStatement()) {
        s.execute("CREATE TABLE " + t + " (id int PRIMARY KEY, v text, ts timestamptz, n numeric, b bytea)");
      }
      transaction(true, () -> {
        try (PreparedStatement ps = c.prepareStatement("INSERT INTO " + t + " VALUES (?, ?, ?, ?, ?)")) {
          for (int i = 0; i < 500; i++) {
            ps.setInt(1, i);
            ps.setString(2, "v" + i);
            ps.setTimestamp(3, new Timestamp(1600000000000L + i));
            ps.setBigDecimal(4, new java.math.BigDecimal("1.5"));
            ps.setBytes(5, new byte[] {1, 2, (byte) i});
            ps.addBatch();
          }
          eq(ps.executeBatch().length, 500, "batch results");
        }
      });
      eq(count(t), 500L, "rows");
    });
    check("rollback", () -> {
      transaction(false, () -> {
        try (Statement s = c.createStatement()) {
          s.execute("DELETE FROM " + t);
        }
      });
      eq(count(t), 500L, "rows");
    });
    check("savepoint after an error", () -> {
      transaction(true, () -> {
        try (Statement s = c.createStatement()) {
          s.execute("INSERT INTO " + t + " (id, v) VALUES (1000, 'x')");
          Savepoint sp = c.setSavepoint();
          try {
            s.execute("INSERT INTO " + t + " (id, v) VALUES (1000, 'dup')");
            throw new AssertionError("no error");
          } catch (SQLException e) {
            eq(e.getSQLState(), "23505", "SQLSTATE");
          }
          c.rollback(sp);
          s.execute("INSERT INTO " + t + " (id, v) VALUES (1001, 'y')");
        }
      });
      eq(count(t), 502L, "rows");
    });
    check("fetch size 100 over 10,000 rows (portal suspended and resumed)", () -> {
      transaction(true, () -> {  // a fetch size takes effect inside a transaction only
        try (Statement s = c.createStatement()) {
          s.setFetchSize(100);
          try (ResultSet rs = s.executeQuery("SELECT g FROM generate_series(1, 10000) g")) {
            int n = 0;
            while (rs.next()) n++;
            eq(n, 10000, "rows");
          }
        }
      });
    });
    check("an error, then the connection goes on", () -> {
      try (Statement s = c.createStatement()) {
        failsThenGoesOn(s, "SELECT 1/0", "22012", 5);
      }
    });
    check("COPY in and out (CopyManager)", () -> {
      CopyManager cm = c.unwrap(PGConnection.class).getCopyAPI();
      try (Statement s = c.createStatement()) {
        s.execute("CREATE TEMP TABLE cp (id int, v text)");
      }
      StringBuilder sb = new StringBuilder();
      for (int i = 0; i < 1000; i++) sb.append(i).append("\tv").append(i).append('\n');
      eq(cm.copyIn("COPY cp FROM STDIN", new StringReader(sb.toString())), 1000L, "copied in");
      eq(cm.copyOut("COPY cp TO STDOUT", new StringWriter()), 1000L, "copied out");
    });
    check("query timeout cancels the statement", () -> {
      try (Statement s = c.createStatement()) {
        s.setQueryTimeout(1);
        failsThenGoesOn(s, "SELECT pg_sleep(20)", "57014", 6);
      }
    });
    check("uuid, float8, date and jsonb parameters and results", () -> {
      try (PreparedStatement ps = c.prepareStatement("SELECT ?::uuid, ?::float8, ?::date, ?::jsonb ->> 'a'")) {
        for (int i = 0; i < 6; i++) {
          ps.setObject(1, UUID.fromString("123e4567-e89b-12d3-a456-426614174000"));
          ps.setDouble(2, 1.25);
          ps.setDate(3, java.sql.Date.valueOf("2020-01-02"));
          ps.setString(4, "{\"a\":\"1\"}");
          try (ResultSet rs = ps.executeQuery()) {
            rs.next();
            eq(rs.getObject(1).toString(), "123e4567-e89b-12d3-a456-426614174000", "uuid");
            eq(rs.getDouble(2), 1.25, "float8");
            eq(rs.getDate(3).toString(), "2020-01-02", "date");
            eq(rs.getString(4), "1", "jsonb");
          }
        }
      }
    });
    check("drop the table", () -> {
      try (Statement s = c.createStatement()) {
        s.execute("DROP TABLE " + t);
      }
    });
    c.close();
    System.out.println(failures == 0 ? "all ok" : failures + " FAILED");
    System.exit(failures == 0 ? 0 : 1);
  }
}
