/*
 * web_assets.h: the dashboard's static files (web/), embedded into the binary at build time.
 *
 * web/embed.cmake generates the table (build/web/web_assets.c) from web/index.html and the files
 * in web/css, web/js and web/img, plus the pinned libraries' dist files from web/node_modules
 * (served under /vendor/).
 * Serving: GET of a path no other route matches -> web_asset_find(url) -> 200 with
 * content_type (see web/http-wiring.patch for the headers, CSP included).
 */
#ifndef MESHSCOPE_WEB_ASSETS_H
#define MESHSCOPE_WEB_ASSETS_H

#include <stddef.h>

struct web_asset {
    const char *path;         /* "/index.html", "/js/app.js", "/vendor/uPlot.esm.js", ... */
    const char *content_type; /* "text/javascript; charset=utf-8", ... */
    const unsigned char *data;
    size_t len; /* bytes of data (data[len] is a NUL, not counted) */
};

/* "/" and "/index.html" -> the index; "/js/app.js" etc; NULL when unknown (or NULL path).
 * Thread-safe (static data). */
const struct web_asset *web_asset_find(const char *path);

#endif
