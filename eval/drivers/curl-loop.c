/* curl-loop: a long-running program that keeps using libcurl, for live updates of the
 * library. One easy handle for its whole life (so connections and cookies are reused, as
 * in any long-lived client); reads commands from stdin, one per line:
 *
 *   get URL        fetch URL; answers "ok get <status> bytes=N reused=0|1 cookies=K"
 *   cookie LINE    hand LINE to the cookie engine as a Set-Cookie header
 *                  (CURLOPT_COOKIELIST); answers "ok cookie cookies=K"
 *
 * or "error <command> <message>". libcurl itself is whatever libcurl.so the dynamic
 * linker finds. */
#include <curl/curl.h>
#include <stdio.h>
#include <string.h>

static size_t count_bytes(char *p, size_t size, size_t n, void *data) {
  (void)p;
  *(long *)data += (long)(size * n);
  return size * n;
}

static long cookie_count(CURL *h) {
  struct curl_slist *list = NULL, *c;
  long n = 0;
  if (curl_easy_getinfo(h, CURLINFO_COOKIELIST, &list) != CURLE_OK) return -1;
  for (c = list; c; c = c->next) n++;
  curl_slist_free_all(list);
  return n;
}

int main(void) {
  char line[8192];
  setvbuf(stdout, NULL, _IOLBF, 0);
  curl_global_init(CURL_GLOBAL_DEFAULT);
  CURL *h = curl_easy_init();
  long bytes = 0;
  curl_easy_setopt(h, CURLOPT_COOKIEFILE, "");
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, count_bytes);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &bytes);
  curl_easy_setopt(h, CURLOPT_TIMEOUT, 10L);
  printf("ready %s\n", curl_version());
  while (fgets(line, sizeof line, stdin)) {
    line[strcspn(line, "\n")] = 0;
    char *arg = strchr(line, ' ');
    if (arg) *arg++ = 0;
    if (arg && strcmp(line, "get") == 0) {
      bytes = 0;
      curl_easy_setopt(h, CURLOPT_URL, arg);
      CURLcode rc = curl_easy_perform(h);
      long status = 0, connects = 0;
      curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
      curl_easy_getinfo(h, CURLINFO_NUM_CONNECTS, &connects);
      if (rc == CURLE_OK)
        printf("ok get %ld bytes=%ld reused=%d cookies=%ld\n", status, bytes, connects == 0, cookie_count(h));
      else
        printf("error get %s\n", curl_easy_strerror(rc));
    } else if (arg && strcmp(line, "cookie") == 0) {
      char header[8300];
      snprintf(header, sizeof header, "Set-Cookie: %s", arg);
      CURLcode rc = curl_easy_setopt(h, CURLOPT_COOKIELIST, header);
      if (rc == CURLE_OK)
        printf("ok cookie cookies=%ld\n", cookie_count(h));
      else
        printf("error cookie %s\n", curl_easy_strerror(rc));
    } else {
      printf("error %s: usage: get URL | cookie LINE\n", line);
    }
  }
  curl_easy_cleanup(h);
  curl_global_cleanup();
  return 0;
}
