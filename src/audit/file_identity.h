#pragma once
// A store file that is deleted or replaced while the proxy writes to it: the process keeps
// writing into the unlinked file, every record "stored" there is lost, and nothing reports it
// (found by adversarial testing: 4,450 acknowledged statements gone, `sinks_healthy` still 1).
// File sinks remember which file they opened and check the path still names it before each
// batch: a failing sink keeps its records in the journal and, on a `required` target, refuses
// statements until the file is back.
#include <sys/stat.h>

#include <cerrno>
#include <optional>
#include <string>

#include "base/result.h"

namespace gh::audit {

struct FileIdentity {
  dev_t dev = 0;
  ino_t ino = 0;
  static std::optional<FileIdentity> of(const std::string& path) {
    struct stat st{};
    if (::stat(path.c_str(), &st) != 0) return std::nullopt;
    return FileIdentity{st.st_dev, st.st_ino};
  }
};

// Error when `path` no longer names the file opened as `opened`.
inline Result<void> still_the_same_file(const std::string& path, const std::optional<FileIdentity>& opened) {
  if (!opened) return {};
  const auto now = FileIdentity::of(path);
  if (now && now->dev == opened->dev && now->ino == opened->ino) return {};
  return fail("58030", "the audit store " + path + " was " + (now ? "replaced" : "deleted") +
                           " while the proxy was writing to it; the records since are kept in the audit journal. "
                           "Put the file back (or move the new one away) and restart the proxy");
}

}  // namespace gh::audit
