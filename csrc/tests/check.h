// The one assertion macro of the C++ unit tests: counts a failure and prints where and why,
// then carries on, so one run reports every failing case. Each test's main returns
// `failures == 0 ? 0 : 1`.
#pragma once

#include <cstdio>

namespace ramo_test {
inline int failures = 0;
}  // namespace ramo_test

#define CHECK(cond, ...)                                           \
  do {                                                             \
    if (!(cond)) {                                                 \
      ++ramo_test::failures;                                       \
      std::printf("FAIL %s:%d: %s | ", __FILE__, __LINE__, #cond); \
      std::printf(__VA_ARGS__);                                    \
      std::printf("\n");                                           \
    }                                                              \
  } while (0)
