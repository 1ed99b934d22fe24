// Status and Result<T>: how the apply path reports failure.
//
// Offline stages throw ls::Error; the apply path does not, because a target may be
// stopped or half-patched when something fails. Every fallible step returns a Status or
// Result<T>, and the caller decides at one rollback point how to put the target back.
#pragma once

#include <string>
#include <utility>
#include <variant>

#include <fmt/format.h>

#include "base/diag.h"

namespace ls {

class [[nodiscard]] Status {
 public:
  Status() = default;
  static Status error(std::string msg, Exit code = Exit::ToolError) { return Status(std::move(msg), code); }
  bool ok() const { return !failed_; }
  explicit operator bool() const { return ok(); }
  const std::string& message() const { return message_; }
  Exit code() const { return code_; }
  // Adds context in front: "apply 3f2a: " + message.
  Status context(std::string_view what) && {
    if (failed_) message_ = fmt::format("{}: {}", what, message_);
    return std::move(*this);
  }

 private:
  Status(std::string msg, Exit code) : failed_(true), message_(std::move(msg)), code_(code) {}
  bool failed_ = false;
  std::string message_;
  Exit code_ = Exit::Ok;
};

template <typename... Args>
Status error(fmt::format_string<Args...> f, Args&&... args) {
  return Status::error(fmt::format(f, std::forward<Args>(args)...));
}

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}
  Result(Status s) : v_(std::move(s)) {}
  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() & { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T* operator->() { return &std::get<0>(v_); }
  T& operator*() { return std::get<0>(v_); }
  Status status() const { return ok() ? Status() : std::get<1>(v_); }

 private:
  std::variant<T, Status> v_;
};

// Early return of a failed Status from a function returning Status or Result<T>.
#define LS_TRY(expr)                         \
  do {                                       \
    ::ls::Status ls_try_status_ = (expr);    \
    if (!ls_try_status_.ok()) return ls_try_status_; \
  } while (0)

}  // namespace ls
