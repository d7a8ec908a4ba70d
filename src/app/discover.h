#pragma once
// `gatehouse discover`: sample a target's tables and suggest a classification (app/discover.cpp).
#include <cstddef>
#include <string>

namespace gh::app {

struct DiscoverArgs {
  std::string config_path;
  std::string target;
  std::string database;  // for a target that passes the client's database name through
  std::string login;     // targets[].logins[].user to read as; default: the first
  std::size_t sample = 1000;
  double threshold = 0.5;
  std::string format = "table";  // table, yaml, json
};

int cmd_discover(const DiscoverArgs& args);

}  // namespace gh::app
