// The web client of the dungeon service: a title screen and a story view,
// switched by the address's hash (#/ and #/games/<id>).

import { byId } from "./dom.js";
import { flashOnHome, setupHome, showHome } from "./home.js";
import { closeGame, currentGameId, openGame, setupStory } from "./story.js";

const views = { home: byId("home-view"), story: byId("story-view") };
const GAME_ROUTE = /^#\/games\/([^/]+)$/;

function showView(name) {
  for (const [view, element] of Object.entries(views)) element.hidden = view !== name;
  document.body.dataset.view = name;
}

function navigate(hash) {
  if (location.hash === hash || (hash === "#/" && !location.hash)) route();
  else location.hash = hash;
}

function route() {
  const match = location.hash.match(GAME_ROUTE);
  if (match) {
    const id = decodeURIComponent(match[1]);
    showView("story");
    if (currentGameId() !== id) openGame(id);
    return;
  }
  const leaving = currentGameId() !== null;
  closeGame();
  showView("home");
  showHome();
  if (leaving) byId("home-title").focus({ preventScroll: true });
  window.scrollTo(0, 0);
}

setupHome({
  onStarted(data) {
    showView("story");
    openGame(data.game.id, { loaded: data });
    navigate(`#/games/${encodeURIComponent(data.game.id)}`);
  },
});
setupStory({
  gone(error) {
    flashOnHome(error);
    navigate("#/");
  },
});
window.addEventListener("hashchange", route);
route();
