/* archive-loop: a long-running program that keeps using libarchive, for live updates of
 * the library. Reads commands from stdin, one per line, and answers each on stdout:
 *
 *   list FILE   read every entry of FILE (any format and filter libarchive knows) and
 *               all of its data
 *   seek FILE   the same, but read each entry's data a second time after
 *               archive_seek_data back to its start (for formats that can seek)
 *
 * The answer is "ok <command> entries=N bytes=M sum=S" or "error <command> <message>".
 * libarchive itself is whatever libarchive.so the dynamic linker finds. */
#include <archive.h>
#include <archive_entry.h>
#include <stdio.h>
#include <string.h>

static void run(const char *cmd, const char *path) {
  int seek = strcmp(cmd, "seek") == 0;
  struct archive *a = archive_read_new();
  archive_read_support_filter_all(a);
  archive_read_support_format_all(a);
  if (archive_read_open_filename(a, path, 10240) != ARCHIVE_OK) {
    printf("error %s open: %s\n", cmd, archive_error_string(a));
    archive_read_free(a);
    return;
  }
  struct archive_entry *e;
  long entries = 0, bytes = 0;
  unsigned long sum = 5381;
  int r;
  char buf[8192];
  while ((r = archive_read_next_header(a, &e)) == ARCHIVE_OK) {
    entries++;
    for (int pass = 0; pass < (seek ? 2 : 1); ++pass) {
      if (pass == 1 && archive_seek_data(a, 0, SEEK_SET) < 0) {
        printf("error %s seek: %s\n", cmd, archive_error_string(a));
        archive_read_free(a);
        return;
      }
      la_ssize_t n;
      while ((n = archive_read_data(a, buf, sizeof buf)) > 0) {
        bytes += n;
        for (la_ssize_t i = 0; i < n; ++i) sum = sum * 33 + (unsigned char)buf[i];
      }
      if (n < 0) {
        printf("error %s data: %s\n", cmd, archive_error_string(a));
        archive_read_free(a);
        return;
      }
    }
  }
  if (r != ARCHIVE_EOF)
    printf("error %s header: %s\n", cmd, archive_error_string(a));
  else
    printf("ok %s entries=%ld bytes=%ld sum=%lu\n", cmd, entries, bytes, sum);
  archive_read_free(a);
}

int main(void) {
  char line[4096];
  setvbuf(stdout, NULL, _IOLBF, 0);
  printf("ready %s\n", archive_version_details());
  while (fgets(line, sizeof line, stdin)) {
    line[strcspn(line, "\n")] = 0;
    char *sp = strchr(line, ' ');
    if (sp) *sp = 0;
    if (!sp || (strcmp(line, "list") != 0 && strcmp(line, "seek") != 0)) {
      printf("error %s: usage: list|seek FILE\n", line);
      continue;
    }
    run(line, sp + 1);
  }
  return 0;
}
