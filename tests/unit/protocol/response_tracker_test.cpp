#include "protocol/response_tracker.h"

#include <gtest/gtest.h>

#include <string_view>

using gh::protocol::ResponseTracker;

namespace {

// Feeds client messages (all must be answered) and then server messages; returns the skipped
// Query/FunctionCall count reported over the server messages.
std::uint32_t run(ResponseTracker& t, std::string_view client, std::string_view server) {
  for (char c : client) EXPECT_TRUE(t.client(c)) << c;
  std::uint32_t skipped = 0;
  for (char s : server) skipped += t.server(s);
  return skipped;
}

}  // namespace

TEST(ResponseTracker, OrdinaryTrafficEndsWithNothingWaiting) {
  ResponseTracker t;
  // simple Query with rows; extended batch with Describe; pipelined batches; FunctionCall
  EXPECT_EQ(run(t, "Q", "TDDCZ"), 0u);
  EXPECT_EQ(run(t, "PBDES", "12TDDCZ"), 0u);
  EXPECT_EQ(run(t, "PDS", "1tTZ"), 0u);       // Describe of a statement
  EXPECT_EQ(run(t, "PDS", "1tnZ"), 0u);       // ... that returns no rows
  EXPECT_EQ(run(t, "BESBES", "2DCZ2sZ"), 0u);  // the second Execute stops at max rows
  EXPECT_EQ(run(t, "F", "VZ"), 0u);
  EXPECT_EQ(run(t, "CCS", "33Z"), 0u);
  EXPECT_EQ(run(t, "Q", "ICZ"), 0u);  // an empty statement in a multi-statement Query
  EXPECT_EQ(t.waiting(), 0u);
  EXPECT_FALSE(t.lost());
}

TEST(ResponseTracker, QueryInsideABatchRunsWhenTheBatchDidNotFail) {
  ResponseTracker t;
  EXPECT_EQ(run(t, "PBEQS", "12CTDCZZ"), 0u);
  EXPECT_EQ(t.waiting(), 0u);
  EXPECT_FALSE(t.lost());
}

TEST(ResponseTracker, QueryAfterAFailedExtendedMessageIsSkipped) {
  ResponseTracker t;
  // Execute fails: the Query before Sync is skipped, the one after it runs.
  for (char c : std::string_view("PBEQFSQ")) EXPECT_TRUE(t.client(c));
  EXPECT_EQ(t.server('1'), 0u);
  EXPECT_EQ(t.server('2'), 0u);
  EXPECT_EQ(t.server('E'), 2u);  // the Query and the FunctionCall
  EXPECT_EQ(run(t, "", "ZCZ"), 0u);
  EXPECT_EQ(t.waiting(), 0u);
  EXPECT_FALSE(t.lost());
}

TEST(ResponseTracker, ErrorsOfQueriesAndSyncsSkipNothing) {
  ResponseTracker t;
  EXPECT_EQ(run(t, "Q", "CEZ"), 0u);       // the second statement of a Query fails
  EXPECT_EQ(run(t, "PBES", "12CEZ"), 0u);  // the implicit commit at Sync fails
  EXPECT_EQ(run(t, "F", "EZ"), 0u);
  EXPECT_EQ(t.waiting(), 0u);
  EXPECT_FALSE(t.lost());
}

TEST(ResponseTracker, AfterAFailureWithoutSyncEverythingIsSkippedUntilTheNextSync) {
  ResponseTracker t;
  // Parse + Describe + Flush (as asyncpg prepares), the Parse fails; then the client sends a
  // Query and a Bind before its Sync: the server skips both.
  EXPECT_EQ(run(t, "PDH", "E"), 0u);
  EXPECT_FALSE(t.client('Q'));
  EXPECT_TRUE(t.client('B'));
  EXPECT_TRUE(t.client('S'));
  EXPECT_EQ(t.server('Z'), 0u);
  EXPECT_EQ(run(t, "Q", "CZ"), 0u);  // the next Query runs again
  EXPECT_EQ(t.waiting(), 0u);
  EXPECT_FALSE(t.lost());
}

TEST(ResponseTracker, ExtendedCopyIgnoresTheSyncsItReads) {
  ResponseTracker t;
  // libpq: Execute + Sync, then COPY data, CopyDone and another Sync; the server reads the first
  // Sync as part of the COPY and ignores it.
  for (char c : std::string_view("PBES")) EXPECT_TRUE(t.client(c));
  EXPECT_EQ(run(t, "", "12G"), 0u);
  t.syncs_ignored(1);
  for (char c : std::string_view("ddcS")) EXPECT_TRUE(t.client(c));
  EXPECT_EQ(run(t, "", "CZ"), 0u);
  EXPECT_EQ(t.waiting(), 0u);
  EXPECT_FALSE(t.lost());
  // A COPY that fails: the server skips to the client's next Sync.
  for (char c : std::string_view("BES")) EXPECT_TRUE(t.client(c));
  EXPECT_EQ(run(t, "", "2G"), 0u);
  t.syncs_ignored(1);
  EXPECT_EQ(t.server('E'), 0u);
  EXPECT_FALSE(t.client('Q'));  // skipped with the rest of the COPY
  EXPECT_TRUE(t.client('S'));
  EXPECT_EQ(t.server('Z'), 0u);
  EXPECT_EQ(t.waiting(), 0u);
  EXPECT_FALSE(t.lost());
}

TEST(ResponseTracker, AnswersThatDoNotFitStopTracking) {
  ResponseTracker t;
  EXPECT_EQ(run(t, "Q", "Z"), 0u);
  EXPECT_EQ(t.server('Z'), 0u);  // a ReadyForQuery for nothing
  EXPECT_TRUE(t.lost());
  // From now on nothing is reported, so the relay counts ReadyForQuery messages as before.
  EXPECT_TRUE(t.client('P'));
  EXPECT_TRUE(t.client('Q'));
  EXPECT_EQ(t.server('E'), 0u);
  EXPECT_EQ(t.waiting(), 0u);

  ResponseTracker u;
  EXPECT_EQ(run(u, "Q", "1"), 0u);  // a ParseComplete while a Query runs
  EXPECT_TRUE(u.lost());
  ResponseTracker v;
  EXPECT_EQ(run(v, "PS", "Z"), 0u);  // a ReadyForQuery before the Parse was answered
  EXPECT_TRUE(v.lost());
}

TEST(ResponseTracker, LongPipelinesStayBounded) {
  ResponseTracker t;
  auto answer_batch = [&] {
    for (int i = 0; i < 100; ++i) {
      EXPECT_EQ(t.server('2'), 0u);
      EXPECT_EQ(t.server('C'), 0u);
    }
    EXPECT_EQ(t.server('Z'), 0u);
  };
  for (int round = 0; round < 1000; ++round) {
    for (int i = 0; i < 100; ++i) {
      EXPECT_TRUE(t.client('B'));
      EXPECT_TRUE(t.client('E'));
    }
    EXPECT_TRUE(t.client('S'));
    if (round > 0) answer_batch();  // the answers lag one batch behind
    EXPECT_EQ(t.waiting(), 201u);
  }
  answer_batch();
  EXPECT_EQ(t.waiting(), 0u);
  EXPECT_FALSE(t.lost());
}
