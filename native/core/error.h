// Typed errors of the numeric core. The binding turns them into JS errors with the same stable `code`
// (see lib/errors.ts), so the C++ core never needs to know about Node.
#pragma once
#include <stdexcept>
#include <string>

namespace ffm {

class Error : public std::runtime_error {
 public:
  Error(std::string code, const std::string& message) : std::runtime_error(message), code_(std::move(code)) {}
  const std::string& code() const { return code_; }

 private:
  std::string code_;
};

// Thrown from inside a job when its JobControl was cancelled; the binding reports it as code ABORTED.
class Cancelled : public std::exception {
 public:
  const char* what() const noexcept override { return "the operation was aborted"; }
};

}  // namespace ffm
