// Shadow data (include/livesplice/patch.h) in this test's own process, real threads:
// what each function returns, and eight threads allocating, reading and freeing at once
// — each variable zeroed when made, each read seeing its own thread's last write.
// (The live tests, tests/process/shadow_test.cc, check it inside updates.)
#include <livesplice/patch.h>

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

namespace {

TEST(Shadow, Functions) {
  static int obj;
  EXPECT_EQ(livesplice_shadow_get(&obj, 1), nullptr);
  auto* v = static_cast<int*>(livesplice_shadow_alloc(&obj, 1, sizeof(int)));
  ASSERT_NE(v, nullptr);
  EXPECT_EQ(*v, 0);
  *v = 42;
  EXPECT_EQ(livesplice_shadow_alloc(&obj, 1, sizeof(int)), nullptr) << "it exists";
  EXPECT_EQ(livesplice_shadow_get(&obj, 1), v);
  EXPECT_EQ(livesplice_shadow_get_or_alloc(&obj, 1, sizeof(int)), v);
  EXPECT_EQ(livesplice_shadow_get(&obj, 2), nullptr) << "another id, another variable";
  auto* big = static_cast<unsigned char*>(livesplice_shadow_get_or_alloc(&obj, 2, 100000));
  ASSERT_NE(big, nullptr);
  EXPECT_EQ(big[99999], 0);
  big[99999] = 1;
  livesplice_shadow_free(&obj, 1);
  EXPECT_EQ(livesplice_shadow_get(&obj, 1), nullptr);
  EXPECT_EQ(livesplice_shadow_get(&obj, 2), big);
  livesplice_shadow_free_all(2);
  EXPECT_EQ(livesplice_shadow_get(&obj, 2), nullptr);
  auto* again = static_cast<int*>(livesplice_shadow_alloc(&obj, 1, sizeof(int)));
  ASSERT_NE(again, nullptr);
  EXPECT_EQ(*again, 0) << "a reused block is zeroed";
  livesplice_shadow_free_all(1);
}

TEST(Shadow, ManyThreadsAtOnce) {
  constexpr int kThreads = 8, kObjects = 2000, kRounds = 20;
  static long objects[kObjects];
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (unsigned long id = 100; id < 100 + kThreads; ++id)
    threads.emplace_back([&, id] {
      for (int round = 0; round < kRounds; ++round) {
        for (int i = 0; i < kObjects; ++i) {
          auto* v = static_cast<long*>(livesplice_shadow_get_or_alloc(&objects[i], id, sizeof(long) * (1 + i % 40)));
          if (!v || v[i % 40] != 0) wrong++;
          if (v) v[i % 40] = static_cast<long>(id) * 100000 + i;
        }
        for (int i = 0; i < kObjects; ++i) {
          auto* v = static_cast<long*>(livesplice_shadow_get(&objects[i], id));
          if (!v || v[i % 40] != static_cast<long>(id) * 100000 + i) wrong++;
        }
        if (round % 2)
          livesplice_shadow_free_all(id);
        else
          for (int i = 0; i < kObjects; ++i) livesplice_shadow_free(&objects[i], id);
      }
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(wrong.load(), 0);
  for (int i = 0; i < kObjects; ++i) EXPECT_EQ(livesplice_shadow_get(&objects[i], 100), nullptr);
}

}  // namespace
