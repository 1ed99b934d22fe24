/* expat-loop: a long-running program that keeps using libexpat, for live updates of the
 * library. Reads commands from stdin, one per line, and answers each on stdout:
 *
 *   parse FILE    parse FILE in one XML_Parse call; external entities are read too
 *                 (through a child parser, XML_ExternalEntityParserCreate)
 *   buffer FILE   parse FILE in 7-byte pieces through XML_GetBuffer/XML_ParseBuffer
 *   dtd FILE      parse FILE with a content-model (ElementDecl) handler
 *   negbuf FILE   fill a buffer with FILE, then XML_ParseBuffer with a negative length
 *                 (an invalid argument, which must be refused: CVE-2024-45490)
 *
 * The answer is "ok <command> elements=N depth=M models=K" or "error <command> <line>:<col>:
 * <message>". Expat itself is whatever libexpat.so the dynamic linker finds. */
#include <expat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct counts {
  long elements, depth, max_depth, models;
};

static void XMLCALL on_start(void *data, const XML_Char *name, const XML_Char **atts) {
  struct counts *c = data;
  (void)name;
  (void)atts;
  c->elements++;
  if (++c->depth > c->max_depth) c->max_depth = c->depth;
}

static void XMLCALL on_end(void *data, const XML_Char *name) {
  struct counts *c = data;
  (void)name;
  c->depth--;
}

static XML_Parser g_parser; /* for on_model's free */

static void XMLCALL on_model_free(void *data, const XML_Char *name, XML_Content *model) {
  struct counts *c = data;
  (void)name;
  c->models++;
  XML_FreeContentModel(g_parser, model);
}

static char *read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  size_t cap = 4096, n = 0;
  char *buf = malloc(cap);
  size_t got;
  while ((got = fread(buf + n, 1, cap - n, f)) > 0) {
    n += got;
    if (n == cap) buf = realloc(buf, cap *= 2);
  }
  fclose(f);
  *len = n;
  return buf;
}

static int XMLCALL on_external(XML_Parser parser, const XML_Char *context, const XML_Char *base,
                               const XML_Char *system_id, const XML_Char *public_id) {
  (void)base;
  (void)public_id;
  if (!system_id) return XML_STATUS_ERROR;
  size_t len;
  char *text = read_file(system_id, &len);
  if (!text) return XML_STATUS_ERROR;
  XML_Parser child = XML_ExternalEntityParserCreate(parser, context, NULL);
  int ok = child && XML_Parse(child, text, (int)len, 1) == XML_STATUS_OK;
  if (child) XML_ParserFree(child);
  free(text);
  return ok ? XML_STATUS_OK : XML_STATUS_ERROR;
}

static void run(const char *cmd, const char *path) {
  size_t len;
  char *text = read_file(path, &len);
  if (!text) {
    printf("error %s cannot read %s\n", cmd, path);
    return;
  }
  struct counts c = {0, 0, 0, 0};
  XML_Parser p = XML_ParserCreate(NULL);
  g_parser = p;
  XML_SetUserData(p, &c);
  XML_SetElementHandler(p, on_start, on_end);
  XML_SetParamEntityParsing(p, XML_PARAM_ENTITY_PARSING_ALWAYS);
  XML_SetExternalEntityRefHandler(p, on_external);
  if (strcmp(cmd, "dtd") == 0) XML_SetElementDeclHandler(p, on_model_free);
  int ok = 1;
  if (strcmp(cmd, "negbuf") == 0) {
    void *b = XML_GetBuffer(p, (int)len);
    if (b) {
      memcpy(b, text, len);
      ok = XML_ParseBuffer(p, -1, 0) == XML_STATUS_OK;
    } else {
      ok = 0;
    }
  } else if (strcmp(cmd, "buffer") == 0) {
    for (size_t off = 0; ok && off <= len; off += 7) {
      size_t n = len - off < 7 ? len - off : 7;
      void *b = XML_GetBuffer(p, (int)n);
      if (!b) {
        ok = 0;
        break;
      }
      memcpy(b, text + off, n);
      ok = XML_ParseBuffer(p, (int)n, off + n >= len) == XML_STATUS_OK;
      if (off + n >= len) break;
    }
  } else {
    ok = XML_Parse(p, text, (int)len, 1) == XML_STATUS_OK;
  }
  if (ok)
    printf("ok %s elements=%ld depth=%ld models=%ld\n", cmd, c.elements, c.max_depth, c.models);
  else
    printf("error %s %lu:%lu: %s\n", cmd, (unsigned long)XML_GetCurrentLineNumber(p),
           (unsigned long)XML_GetCurrentColumnNumber(p), XML_ErrorString(XML_GetErrorCode(p)));
  XML_ParserFree(p);
  free(text);
}

int main(void) {
  char line[4096];
  setvbuf(stdout, NULL, _IOLBF, 0);
  printf("ready %s\n", XML_ExpatVersion());
  while (fgets(line, sizeof line, stdin)) {
    line[strcspn(line, "\n")] = 0;
    char *sp = strchr(line, ' ');
    if (!sp) {
      printf("error %s: usage: parse|buffer|dtd|negbuf FILE\n", line);
      continue;
    }
    *sp = 0;
    run(line, sp + 1);
  }
  return 0;
}
