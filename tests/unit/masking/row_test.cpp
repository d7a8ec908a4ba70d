#include "masking/row.h"

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

#include "base/bytes.h"

namespace gh::masking {
namespace {

constexpr std::string_view kKey = "0123456789abcdef-test-key";
constexpr std::uint32_t kInt4 = 23, kText = 25, kUuid = 2950;

const Spec kRedact{Strategy::Redact, 0, 4, {}};
const Spec kNull{Strategy::Null, 0, 4, {}};
const Spec kHash{Strategy::Hash, 0, 4, {}};

using Field = std::optional<std::string>;

std::string data_row_body(const std::vector<Field>& fields) {
  std::string b;
  append_be16(b, std::uint16_t(fields.size()));
  for (const Field& f : fields) {
    if (!f) {
      append_be32(b, 0xffffffffU);
      continue;
    }
    append_be32(b, std::uint32_t(f->size()));
    b += *f;
  }
  return b;
}

std::string data_row(const std::vector<Field>& fields) {
  const std::string body = data_row_body(fields);
  std::string m = "D";
  append_be32(m, std::uint32_t(body.size() + 4));
  return m + body;
}

// ---- DataRow -----------------------------------------------------------------------------

TEST(RewriteDataRow, PassesUnmaskedColumnsThrough) {
  const std::vector<Field> fields = {"1", std::nullopt, "alice", ""};
  const std::vector<ColumnMask> plan(4);
  std::string out;
  ASSERT_TRUE(rewrite_data_row(data_row_body(fields), plan, kKey, out));
  EXPECT_EQ(out, data_row(fields));
}

TEST(RewriteDataRow, MasksPlannedColumns) {
  const std::vector<ColumnMask> plan = {{nullptr, kInt4, Format::Text},
                                        {&kRedact, kText, Format::Text},
                                        {&kRedact, kInt4, Format::Text},
                                        {nullptr, kText, Format::Text},
                                        {&kNull, kText, Format::Text},
                                        {&kRedact, kText, Format::Text}};
  std::string out = "prefix";
  ASSERT_TRUE(rewrite_data_row(data_row_body({"42", "alice@example.com", "12345", "keep", "secret", std::nullopt}),
                               plan, kKey, out));
  EXPECT_EQ(out, "prefix" + data_row({"42", "****", "0", "keep", std::nullopt, std::nullopt}));
}

TEST(RewriteDataRow, ValuesThatCannotBeMaskedBecomeNull) {
  const std::vector<ColumnMask> plan = {{&kRedact, 1114, Format::Text}, {&kRedact, kInt4, Format::Binary}};
  std::string out;
  ASSERT_TRUE(rewrite_data_row(data_row_body({"2024-01-01 10:00:00", std::string("\0\0\0", 3)}), plan, kKey, out));
  EXPECT_EQ(out, data_row({std::nullopt, std::nullopt}));
}

TEST(RewriteDataRow, BinaryColumns) {
  const std::vector<ColumnMask> plan = {{&kHash, kUuid, Format::Binary}, {&kRedact, kInt4, Format::Binary}};
  std::string out;
  ASSERT_TRUE(rewrite_data_row(data_row_body({std::string(16, '\x11'), std::string("\0\0\0\x05", 4)}), plan, kKey, out));
  ASSERT_EQ(out.size(), 1 + 4 + 2 + 4 + 16 + 4 + 4);
  EXPECT_EQ(load_be32(out.data() + 7), 16u);
  EXPECT_NE(out.substr(11, 16), std::string(16, '\x11'));
  EXPECT_EQ(out.substr(27), std::string("\0\0\0\x04\0\0\0\0", 8));
}

TEST(RewriteDataRow, EmptyRow) {
  std::string out;
  ASSERT_TRUE(rewrite_data_row(std::string("\0\0", 2), {}, kKey, out));
  EXPECT_EQ(out, data_row({}));
}

TEST(RewriteDataRow, RefusesMalformedBodies) {
  const std::vector<ColumnMask> plan = {{nullptr, kText, Format::Text}, {&kRedact, kText, Format::Text}};
  const std::string good = data_row_body({"ab", "cd"});
  std::vector<std::string> bad = {
      "",
      std::string("\0", 1),
      data_row_body({"ab"}),                         // count differs from the plan
      data_row_body({"ab", "cd", "ef"}),             // count differs from the plan
      good + "x",                                    // trailing bytes
      good.substr(0, good.size() - 1),               // short value
      good.substr(0, 8),                             // short length
      std::string("\xff\xff", 2) + good.substr(2),   // negative count
  };
  std::string neg = good;
  store_be32(neg.data() + 2, 0xfffffffeU);  // length -2
  bad.push_back(neg);
  std::string huge = good;
  store_be32(huge.data() + 2, 0x7fffffffU);  // longer than what remains
  bad.push_back(huge);
  for (std::size_t i = 0; i < bad.size(); ++i) {
    std::string out = "keep";
    EXPECT_FALSE(rewrite_data_row(bad[i], plan, kKey, out)) << i;
    EXPECT_EQ(out, "keep") << "nothing appended on failure";
  }
  // Every truncation of a good body is refused.
  for (std::size_t n = 0; n < good.size(); ++n) {
    std::string out;
    EXPECT_FALSE(rewrite_data_row(good.substr(0, n), plan, kKey, out)) << n;
  }
}

// ---- COPY helpers ------------------------------------------------------------------------

std::optional<std::string> run_copy(CopyFormat format, const std::vector<ColumnMask>& plan, std::string_view data,
                                    std::size_t chunk, CopyOptions opts = {}) {
  CopyMasker m(format, plan, std::string(kKey), opts);
  std::string out;
  for (std::size_t i = 0; i < data.size(); i += chunk) {
    const std::size_t before = out.size();
    if (!m.feed(data.substr(i, chunk), out)) return std::nullopt;
    // Whole rows only: what a feed adds always ends a row (text/csv).
    if (format != CopyFormat::Binary && out.size() > before) {
      EXPECT_EQ(out.back(), '\n');
    }
  }
  if (!m.finish()) return std::nullopt;
  return out;
}

// Feeding one byte at a time, in chunks, or all at once gives the same result.
std::optional<std::string> copy_all_ways(CopyFormat format, const std::vector<ColumnMask>& plan,
                                         std::string_view data, CopyOptions opts = {}) {
  const auto whole = run_copy(format, plan, data, data.size() + 1, opts);
  for (std::size_t chunk : {std::size_t(1), std::size_t(2), std::size_t(3), std::size_t(7), std::size_t(64)})
    EXPECT_EQ(run_copy(format, plan, data, chunk, opts), whole) << "chunk " << chunk;
  return whole;
}

// ---- COPY text ---------------------------------------------------------------------------

TEST(CopyText, MasksAndKeepsEscapes) {
  const std::vector<ColumnMask> plan = {{nullptr, kInt4}, {&kRedact, kText}, {nullptr, kText}};
  const std::string in = "1\tsecret\tkeep\\twith tab\n2\t\\N\t\\N\n3\tsec\\tret\\\\\tx\\ny\n";
  EXPECT_EQ(copy_all_ways(CopyFormat::Text, plan, in), "1\t****\tkeep\\twith tab\n2\t\\N\t\\N\n3\t****\tx\\ny\n");
}

TEST(CopyText, DecodesBeforeMaskingAndEscapesAfter) {
  const Spec keep_all{Strategy::Partial, 100, 100, {}};  // nothing hidden: all masked (tests decoding length)
  const Spec fixed{Strategy::Fixed, 0, 0, "a\tb\\c\nd"};
  const Spec partial{Strategy::Partial, 1, 1, {}};
  const std::vector<ColumnMask> plan = {{&keep_all, kText}, {&fixed, kText}, {&partial, kText}};
  // \101 is 'A' (octal), \x42 is 'B' (hex), \t one character: 7 code points once decoded.
  const std::string in = "\\101\\x42\\tcdef\tz\tq\\tw\\\\e\n";
  EXPECT_EQ(copy_all_ways(CopyFormat::Text, plan, in), "*******\ta\\tb\\\\c\\nd\tq***e\n");
}

TEST(CopyText, HashMatchesTheDecodedValue) {
  const std::vector<ColumnMask> plan = {{&kHash, kText}};
  std::string direct;
  ASSERT_TRUE(mask_value(kHash, kKey, kText, Format::Text, "tab\there", direct));
  EXPECT_EQ(copy_all_ways(CopyFormat::Text, plan, "tab\\there\n"), direct + "\n");
}

TEST(CopyText, CustomDelimiterAndNull) {
  CopyOptions opts;
  opts.delimiter = '|';
  opts.null_string = "NULL";
  const std::vector<ColumnMask> plan = {{&kRedact, kText}, {&kRedact, kText}, {&kNull, kText}};
  EXPECT_EQ(copy_all_ways(CopyFormat::Text, plan, "a\\|b|NULL|x\n", opts), "****|NULL|NULL\n");
}

TEST(CopyText, RefusesMalformed) {
  const std::vector<ColumnMask> plan = {{&kRedact, kText}, {nullptr, kText}};
  EXPECT_FALSE(copy_all_ways(CopyFormat::Text, plan, "only-one-field\n"));
  EXPECT_FALSE(copy_all_ways(CopyFormat::Text, plan, "a\tb\tc\n"));
  EXPECT_FALSE(copy_all_ways(CopyFormat::Text, plan, "a\tb\r\n"));
  EXPECT_FALSE(copy_all_ways(CopyFormat::Text, plan, "a\tb\nunfinished\t"));  // finish: partial row
  // Invalid options refuse everything.
  CopyOptions opts;
  opts.delimiter = '\\';
  EXPECT_FALSE(copy_all_ways(CopyFormat::Text, plan, "a\\b\n", opts));
}

TEST(CopyText, EscapedNewlineDoesNotEndTheRow) {
  const std::vector<ColumnMask> plan = {{nullptr, kText}, {&kRedact, kText}};
  EXPECT_EQ(copy_all_ways(CopyFormat::Text, plan, "a\\\nb\tc\n"), "a\\\nb\t****\n");
}

TEST(CopyText, RowLimit) {
  CopyOptions opts;
  opts.max_row_bytes = 16;
  const std::vector<ColumnMask> plan = {{&kRedact, kText}};
  EXPECT_TRUE(run_copy(CopyFormat::Text, plan, std::string(16, 'a') + "\n", 4, opts));
  EXPECT_FALSE(run_copy(CopyFormat::Text, plan, std::string(17, 'a') + "\n", 4, opts));
  EXPECT_FALSE(run_copy(CopyFormat::Text, plan, std::string(17, 'a') + "\n", 100, opts));
}

TEST(CopyText, OutputOnlyWholeRowsAndStaysFailed) {
  CopyMasker m(CopyFormat::Text, {{&kRedact, kText}}, std::string(kKey));
  std::string out;
  ASSERT_TRUE(m.feed("abc", out));
  EXPECT_EQ(out, "");
  EXPECT_FALSE(m.finish());
  ASSERT_TRUE(m.feed("def\nxy", out));
  EXPECT_EQ(out, "****\n");
  ASSERT_TRUE(m.feed("z\n", out));
  EXPECT_EQ(out, "****\n****\n");
  EXPECT_TRUE(m.finish());
  EXPECT_FALSE(m.feed("a\tb\n", out));
  EXPECT_EQ(out, "****\n****\n");
  EXPECT_TRUE(m.failed());
  EXPECT_FALSE(m.feed("a\n", out));
}

TEST(CopyText, ZeroColumns) {
  EXPECT_EQ(copy_all_ways(CopyFormat::Text, {}, "\n\n"), "\n\n");
  EXPECT_FALSE(copy_all_ways(CopyFormat::Text, {}, "x\n"));
}

// ---- COPY csv ----------------------------------------------------------------------------

TEST(CopyCsv, QuotedFieldsWithDelimitersQuotesAndNewlines) {
  const std::vector<ColumnMask> plan = {{nullptr, kInt4}, {&kRedact, kText}, {nullptr, kText}, {&kRedact, kText}};
  const std::string in =
      "1,\"Smith, \"\"Al\"\"\nline2\",\"keep, \"\"this\"\"\nx\",plain\n"
      "2,,\"\",\"\"\n"
      "3,\"a\r\nb\",\"\r\n\",\"\"\"\"\n";
  EXPECT_EQ(copy_all_ways(CopyFormat::Csv, plan, in),
            "1,****,\"keep, \"\"this\"\"\nx\",****\n"
            "2,,\"\",****\n"  // unquoted empty = NULL (kept), quoted empty = '' (masked)
            "3,****,\"\r\n\",****\n");
}

TEST(CopyCsv, MaskedValuesAreQuotedWhenNeeded) {
  const Spec comma{Strategy::Fixed, 0, 0, "a,b"};
  const Spec quote{Strategy::Fixed, 0, 0, "say \"hi\""};
  const Spec empty{Strategy::Fixed, 0, 0, ""};
  const Spec newline{Strategy::Fixed, 0, 0, "x\ny"};
  const std::vector<ColumnMask> plan = {{&comma, kText}, {&quote, kText}, {&empty, kText}, {&newline, kText}};
  EXPECT_EQ(copy_all_ways(CopyFormat::Csv, plan, "1,2,3,4\n"), "\"a,b\",\"say \"\"hi\"\"\",\"\",\"x\ny\"\n");
}

TEST(CopyCsv, HashMatchesTheDecodedValue) {
  const std::vector<ColumnMask> plan = {{&kHash, kText}};
  std::string direct;
  ASSERT_TRUE(mask_value(kHash, kKey, kText, Format::Text, "a,\"b\"\nc", direct));
  EXPECT_EQ(copy_all_ways(CopyFormat::Csv, plan, "\"a,\"\"b\"\"\nc\"\n"), direct + "\n");
}

TEST(CopyCsv, CustomOptions) {
  CopyOptions opts;
  opts.delimiter = ';';
  opts.quote = '\'';
  opts.escape = '\\';
  opts.null_string = "NULL";
  const Spec fixed{Strategy::Fixed, 0, 0, "it's \\ ok"};
  const std::vector<ColumnMask> plan = {{&kRedact, kText}, {&fixed, kText}, {&kRedact, kText}, {nullptr, kText}};
  const std::string in = "'a;\\'b\\\\';x;NULL;'NULL'\n'\n';'';'NULL';z\n";
  EXPECT_EQ(copy_all_ways(CopyFormat::Csv, plan, in, opts),
            "****;'it\\'s \\\\ ok';NULL;'NULL'\n****;'it\\'s \\\\ ok';****;z\n");
  std::string direct;
  ASSERT_TRUE(mask_value(kHash, kKey, kText, Format::Text, "a;'b\\", direct));
  EXPECT_EQ(copy_all_ways(CopyFormat::Csv, {{&kHash, kText}}, "'a;\\'b\\\\'\n", opts), direct + "\n");
}

TEST(CopyCsv, RefusesMalformed) {
  const std::vector<ColumnMask> plan = {{&kRedact, kText}, {nullptr, kText}};
  EXPECT_FALSE(copy_all_ways(CopyFormat::Csv, plan, "\"unterminated,x\n"));  // never ends: finish fails
  EXPECT_FALSE(copy_all_ways(CopyFormat::Csv, plan, "a,b,c\n"));
  EXPECT_FALSE(copy_all_ways(CopyFormat::Csv, plan, "a,b\r\n"));
  CopyOptions opts;
  opts.quote = ',';
  EXPECT_FALSE(copy_all_ways(CopyFormat::Csv, plan, "a,b\n", opts));
}

// ---- COPY binary -------------------------------------------------------------------------

std::string binary_header(std::string_view ext = {}) {
  std::string s("PGCOPY\n\377\r\n\0", 11);
  append_be32(s, 0);
  append_be32(s, std::uint32_t(ext.size()));
  s += ext;
  return s;
}

std::string binary_tuple(const std::vector<Field>& fields) {
  std::string s;
  append_be16(s, std::uint16_t(fields.size()));
  for (const Field& f : fields) {
    if (!f) {
      append_be32(s, 0xffffffffU);
      continue;
    }
    append_be32(s, std::uint32_t(f->size()));
    s += *f;
  }
  return s;
}

const std::string kTrailer("\xff\xff", 2);

TEST(CopyBinary, MasksTuples) {
  const std::vector<ColumnMask> plan = {{nullptr, kInt4}, {&kRedact, kText}, {&kRedact, kInt4}, {&kNull, kText}};
  const std::string in = binary_header("ext!") + binary_tuple({std::string("\0\0\0\1", 4), "secret", std::string("\0\0\0\7", 4), "x"}) +
                         binary_tuple({std::nullopt, std::nullopt, std::string("\0\0\7", 3), std::nullopt}) + kTrailer;
  const std::string want = binary_header("ext!") +
                           binary_tuple({std::string("\0\0\0\1", 4), "****", std::string(4, '\0'), std::nullopt}) +
                           binary_tuple({std::nullopt, std::nullopt, std::nullopt, std::nullopt}) + kTrailer;
  EXPECT_EQ(copy_all_ways(CopyFormat::Binary, plan, in), want);
}

TEST(CopyBinary, RefusesMalformed) {
  const std::vector<ColumnMask> plan = {{&kRedact, kText}};
  const std::string tuple = binary_tuple({"abc"});
  EXPECT_FALSE(copy_all_ways(CopyFormat::Binary, plan, binary_header() + tuple));  // no trailer
  EXPECT_FALSE(copy_all_ways(CopyFormat::Binary, plan, binary_header() + tuple + kTrailer + tuple));
  EXPECT_FALSE(copy_all_ways(CopyFormat::Binary, plan, binary_header() + binary_tuple({"a", "b"}) + kTrailer));
  EXPECT_FALSE(copy_all_ways(CopyFormat::Binary, plan, "PGCOPY\n\377\r\n\1" + binary_header().substr(11) + kTrailer));
  std::string oids = binary_header();
  oids[12] = 1;  // flag bit 16: OIDs
  EXPECT_FALSE(copy_all_ways(CopyFormat::Binary, plan, oids + kTrailer));
  std::string neg = binary_header() + tuple + kTrailer;
  store_be32(neg.data() + 19 + 2, 0xfffffffeU);
  EXPECT_FALSE(copy_all_ways(CopyFormat::Binary, plan, neg));
  EXPECT_FALSE(copy_all_ways(CopyFormat::Binary, plan, binary_header() + tuple.substr(0, 5)));
  EXPECT_FALSE(copy_all_ways(CopyFormat::Binary, plan, ""));
  // A wrong signature is refused as soon as its first byte is seen.
  CopyMasker m(CopyFormat::Binary, plan, std::string(kKey));
  std::string out;
  EXPECT_FALSE(m.feed("X", out));
}

TEST(CopyBinary, FieldLimit) {
  CopyOptions opts;
  opts.max_row_bytes = 32;  // counts a tuple's framing too
  const std::vector<ColumnMask> plan = {{nullptr, kText}};
  EXPECT_TRUE(run_copy(CopyFormat::Binary, plan, binary_header() + binary_tuple({std::string(26, 'a')}) + kTrailer, 3, opts));
  EXPECT_FALSE(run_copy(CopyFormat::Binary, plan, binary_header() + binary_tuple({std::string(27, 'a')}) + kTrailer, 3, opts));
  EXPECT_FALSE(run_copy(CopyFormat::Binary, plan, binary_header() + binary_tuple({std::string(40, 'a')}) + kTrailer, 100, opts));
}

}  // namespace
}  // namespace gh::masking
