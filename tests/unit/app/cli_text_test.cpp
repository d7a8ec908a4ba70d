#include "app/cli_text.h"

#include <gtest/gtest.h>

using gh::app::one_line;
using gh::app::visible;

TEST(CliText, ControlCharactersAreShownNotSent) {
  EXPECT_EQ(visible("a\x1b[2Jb\rc\nd\te"), "a\\x1b[2Jb\\x0dc\nd\te");
  EXPECT_EQ(one_line("a\x1b\nb", 80), "a? b");
}

TEST(CliText, BidiAndC1ControlsAreShownNotApplied) {
  // Found by adversarial testing: U+202E in a held statement or its reason reached the reviewer's
  // terminal and reordered the line ("Trojan Source").
  EXPECT_EQ(visible("ok \u202e evil \u202c x"), "ok \\u{202e} evil \\u{202c} x");
  EXPECT_EQ(visible("\u2066a\u2069 \u200f \u061c"), "\\u{2066}a\\u{2069} \\u{200f} \\u{061c}");
  EXPECT_EQ(visible("csi\xc2\x9b" "2J"), "csi\\u{009b}2J");
  EXPECT_EQ(one_line("x\u202ey", 80), "x?y");
  // Other characters, accented letters and the other punctuation of that block pass unchanged.
  EXPECT_EQ(visible("café — “quoted” \u2026 日本"), "café — “quoted” \u2026 日本");
}
