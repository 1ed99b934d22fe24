#include <string>

// Throws std::out_of_range for a key it does not know.
int lookup(const std::string& key);
// Calls thrower(), which always throws; a string of its own is destroyed on the way.
int relay(int n);
int thrower(int n);
// How many frames backtrace() sees from inside it.
int depth();
// Waits a little; a worker thread calls it for ever, until cancelled.
void wait_turn();
