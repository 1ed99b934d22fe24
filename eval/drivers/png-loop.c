/* png-loop: a long-running program that keeps using libpng, for live updates of the
 * library. Reads commands from stdin, one per line, and answers each on stdout:
 *
 *   roundtrip FILE N  write an NxN RGBA gradient to FILE with the simplified API
 *                     (png_image_write_to_file), read it back (png_image_begin_read /
 *                     png_image_finish_read, as RGBA and as 8-bit gray) and compare
 *   quantize FILE     read FILE with the classic API, reduced to 8 colours with
 *                     png_set_quantize
 *
 * The answer is "ok <command> ..." with a checksum, or "error <command> <message>".
 * libpng itself is whatever libpng16.so the dynamic linker finds. */
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static unsigned long checksum(const unsigned char *p, size_t n) {
  unsigned long h = 5381;
  for (size_t i = 0; i < n; ++i) h = h * 33 + p[i];
  return h;
}

static void roundtrip(const char *path, int n) {
  png_image img;
  memset(&img, 0, sizeof img);
  img.version = PNG_IMAGE_VERSION;
  img.width = (png_uint_32)n;
  img.height = (png_uint_32)n;
  img.format = PNG_FORMAT_RGBA;
  unsigned char *px = malloc(PNG_IMAGE_SIZE(img));
  for (int y = 0; y < n; ++y)
    for (int x = 0; x < n; ++x) {
      unsigned char *p = px + 4 * (y * n + x);
      p[0] = (unsigned char)(x * 255 / (n - 1));
      p[1] = (unsigned char)(y * 255 / (n - 1));
      p[2] = (unsigned char)((x + y) & 0xff);
      p[3] = 255;
    }
  if (!png_image_write_to_file(&img, path, 0, px, 0, NULL)) {
    printf("error roundtrip write: %s\n", img.message);
    free(px);
    return;
  }
  png_image in;
  memset(&in, 0, sizeof in);
  in.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_file(&in, path)) {
    printf("error roundtrip read: %s\n", in.message);
    free(px);
    return;
  }
  in.format = PNG_FORMAT_RGBA;
  unsigned char *back = malloc(PNG_IMAGE_SIZE(in));
  int ok = png_image_finish_read(&in, NULL, back, 0, NULL);
  int same = ok && in.width == img.width && memcmp(back, px, PNG_IMAGE_SIZE(img)) == 0;
  png_image gray;
  memset(&gray, 0, sizeof gray);
  gray.version = PNG_IMAGE_VERSION;
  unsigned long gsum = 0;
  if (png_image_begin_read_from_file(&gray, path)) {
    gray.format = PNG_FORMAT_GRAY;
    unsigned char *g = malloc(PNG_IMAGE_SIZE(gray));
    if (png_image_finish_read(&gray, NULL, g, 0, NULL)) gsum = checksum(g, PNG_IMAGE_SIZE(gray));
    free(g);
  }
  if (same)
    printf("ok roundtrip %dx%d same gray=%lu\n", n, n, gsum);
  else
    printf("error roundtrip %s\n", ok ? "pixels differ" : in.message);
  free(back);
  free(px);
}

static void quantize(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    printf("error quantize cannot open %s\n", path);
    return;
  }
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
  png_infop info = png_create_info_struct(png);
  unsigned char *rows = NULL;
  png_bytep *rowp = NULL;
  if (setjmp(png_jmpbuf(png))) {
    printf("error quantize libpng error\n");
    png_destroy_read_struct(&png, &info, NULL);
    free(rows);
    free(rowp);
    fclose(f);
    return;
  }
  png_init_io(png, f);
  png_read_info(png, info);
  png_set_strip_alpha(png);
  png_set_strip_16(png);
  png_color palette[8];
  for (int i = 0; i < 8; ++i) {
    palette[i].red = (png_byte)((i & 1) ? 255 : 0);
    palette[i].green = (png_byte)((i & 2) ? 255 : 0);
    palette[i].blue = (png_byte)((i & 4) ? 255 : 0);
  }
  png_set_quantize(png, palette, 8, 8, NULL, 1);
  png_read_update_info(png, info);
  png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
  size_t stride = png_get_rowbytes(png, info);
  rows = malloc(stride * h);
  rowp = malloc(sizeof *rowp * h);
  for (png_uint_32 y = 0; y < h; ++y) rowp[y] = rows + y * stride;
  png_read_image(png, rowp);
  png_read_end(png, NULL);
  printf("ok quantize %ux%u stride=%zu sum=%lu\n", w, h, stride, checksum(rows, stride * h));
  png_destroy_read_struct(&png, &info, NULL);
  free(rows);
  free(rowp);
  fclose(f);
}

int main(void) {
  char line[4096];
  setvbuf(stdout, NULL, _IOLBF, 0);
  printf("ready libpng %s\n", png_get_libpng_ver(NULL));
  while (fgets(line, sizeof line, stdin)) {
    line[strcspn(line, "\n")] = 0;
    char path[4096];
    int n;
    if (sscanf(line, "roundtrip %4095s %d", path, &n) == 2 && n > 1 && n < 4096)
      roundtrip(path, n);
    else if (sscanf(line, "quantize %4095s", path) == 1)
      quantize(path);
    else
      printf("error %s: usage: roundtrip FILE N | quantize FILE\n", line);
  }
  return 0;
}
