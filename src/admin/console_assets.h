#pragma once
// The console's built files (web/dist, built by Vite), embedded into the binary at build time
// (cmake/embed_console.cmake writes the definition), so that one file deploys.
#include <cstddef>
#include <span>
#include <string_view>

namespace gh::admin {

struct ConsoleAsset {
  std::string_view path;  // relative to /console/: "index.html", "assets/index-1a2b3c.js"
  std::string_view content_type;
  std::string_view body;
};

// Empty when the binary was built without the console (no npm, or web/node_modules missing).
std::span<const ConsoleAsset> console_assets();

}  // namespace gh::admin
