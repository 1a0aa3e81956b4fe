// The genres and art styles, loaded once from GET /api/catalog.

import { routes } from "./api.js";
import { catalogColours } from "./dom.js";

let loading = null;
let catalog = { genres: [], styles: [] };

/** The catalog (cached after the first success; a failure is retried next call). */
export function loadCatalog() {
  if (!loading) {
    loading = routes.catalog().then((data) => {
      catalog = { genres: data?.genres ?? [], styles: data?.styles ?? [] };
      return catalog;
    }).catch((error) => {
      loading = null;
      throw error;
    });
  }
  return loading;
}

const titleCase = (id) => String(id ?? "").replace(/_/g, " ").replace(/^./, (c) => c.toUpperCase());

export function genreTitle(id) {
  return catalog.genres.find((genre) => genre.id === id)?.title ?? titleCase(id);
}

export function styleTitle(id) {
  return catalog.styles.find((style) => style.id === id)?.title ?? titleCase(id);
}

/** {background, accent} CSS colours of a genre, when the catalog has them. */
export function genreColours(id) {
  return catalogColours(catalog.genres.find((genre) => genre.id === id));
}
