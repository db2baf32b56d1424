"""The page's look and its few lines of browser code: CSS, the page-wide file drop, and the
click/scroll handlers of the sources panel and the passage viewer.

No external fonts, scripts or images are loaded: the app works offline and leaks nothing.
"""

from __future__ import annotations

import gradio as gr


def theme() -> gr.themes.Base:
    system = ["ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "Roboto", "Noto Sans", "Noto Sans CJK SC",
              "Helvetica Neue", "Arial", "sans-serif"]
    mono = ["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "Liberation Mono", "monospace"]
    return gr.themes.Soft(primary_hue="indigo", secondary_hue="slate", neutral_hue="slate", font=system, font_mono=mono,
                          radius_size="md")


# Clicking a card in the sources panel raises a click event that carries the source number.
SOURCES_JS = """
element.addEventListener('click', (e) => {
  const card = e.target.closest('[data-source]');
  if (!card) return;
  element.querySelectorAll('.rc-card').forEach((c) => c.classList.toggle('rc-active', c === card));
  trigger('click', {source: Number(card.dataset.source)});
});
"""

# The viewer scrolls its page text so that the highlighted passage is in view, and its page picture
# so that the highlight is: the first row of the picture with highlight-coloured pixels (the server
# paints them, ragchat.ui.pageview.HIGHLIGHT over the page) is found by reading the picture back.
VIEWER_JS = """
const showHighlight = (img) => {
  const box = img.closest('.rc-page-image');
  if (!box || !img.naturalWidth || box.scrollHeight <= box.clientHeight) return;
  const canvas = document.createElement('canvas');
  canvas.width = img.naturalWidth;
  canvas.height = img.naturalHeight;
  const ctx = canvas.getContext('2d', {willReadFrequently: true});
  ctx.drawImage(img, 0, 0);
  const px = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
  for (let y = 0; y < canvas.height; y += 2) {
    let hits = 0;
    for (let x = 0; x < canvas.width; x += 3) {
      const i = 4 * (y * canvas.width + x);
      if (px[i] > 240 && px[i + 1] > 195 && px[i + 1] < 245 && px[i + 2] < 190) hits++;
    }
    if (hits > 8) {
      const top = y * img.clientHeight / canvas.height;
      box.scrollTop = Math.max(0, Math.round(top - box.clientHeight / 4));
      return;
    }
  }
};
const revealPicture = () => {
  const img = element.querySelector('.rc-page-image img');
  if (!img) return;
  if (img.complete) showHighlight(img);
  else img.addEventListener('load', () => showHighlight(img), {once: true});
};
watch('value', revealPicture);
const reveal = () => {
  const mark = element.querySelector('#rc-hl');
  const box = element.querySelector('.rc-page-text');
  if (!mark || !box) return;
  const style = getComputedStyle(box);
  const line = parseFloat(style.lineHeight) || 20;
  const first = mark.getClientRects()[0] || mark.getBoundingClientRect();
  // where the marked line box starts, in the box's scrolled content
  const lineTop = box.scrollTop + first.top - box.getBoundingClientRect().top - (line - first.height) / 2;
  box.scrollTop = Math.max(0, Math.round(lineTop - 2 * line));  // two whole lines of context above
};
watch('value', reveal);
reveal();
"""

# Files dropped anywhere on the page go to the chat tab's upload box.
HEAD = """
<script>
(() => {
  let depth = 0;
  const hasFiles = (e) => e.dataTransfer && Array.from(e.dataTransfer.types || []).includes('Files');
  const done = () => { depth = 0; document.body.classList.remove('rc-dragging'); };
  window.addEventListener('dragenter', (e) => { if (hasFiles(e)) { depth++; document.body.classList.add('rc-dragging'); } });
  window.addEventListener('dragleave', (e) => { if (hasFiles(e) && --depth <= 0) done(); });
  window.addEventListener('dragover', (e) => { if (hasFiles(e)) e.preventDefault(); });
  window.addEventListener('drop', (e) => {
    done();
    if (!hasFiles(e)) return;
    if (e.target.closest && e.target.closest('#rc-upload, #rc-upload-library')) return;  // a drop zone handles it
    e.preventDefault();
    const input = document.querySelector('#rc-upload input[type=file]');
    if (!input) return;
    const dt = new DataTransfer();
    for (const f of e.dataTransfer.files) dt.items.add(f);
    input.files = dt.files;
    input.dispatchEvent(new Event('change', {bubbles: true}));
  });
})();
</script>
"""

CSS = """
/* ---------- frame ---------- */
footer { display: none !important; }
#rc-header { align-items: center; margin-bottom: 2px; }
#rc-title .rc-title { font-size: 1.35rem; font-weight: 650; letter-spacing: -0.01em; padding: 4px 2px; }
#rc-badge { display: flex; justify-content: flex-end; }
.rc-badge { display: inline-flex; align-items: center; gap: 8px; padding: 6px 12px; border-radius: 999px;
  background: var(--color-accent-soft); color: var(--body-text-color); font-size: 0.88rem;
  border: 1px solid var(--border-color-accent-subdued); white-space: nowrap; }
.rc-badge b { font-weight: 600; }
.rc-badge .rc-kind { font-size: 0.75rem; padding: 1px 8px; border-radius: 999px; background: var(--primary-500);
  color: white; }
.rc-badge .rc-dot { width: 8px; height: 8px; border-radius: 50%; background: #22c55e; box-shadow: 0 0 0 3px #22c55e33; }
.rc-badge-off { background: var(--block-background-fill); }
#rc-notice { background: #fff7e6; border: 1px solid #f5c26b; border-radius: 10px; padding: 4px 14px; color: #7a4b00; }
.dark #rc-notice { background: #3a2a0a; color: #ffd99a; }

/* ---------- sidebar ---------- */
.rc-brand { font-size: 1.45rem; font-weight: 700; letter-spacing: -0.02em; display: flex; align-items: center; gap: 8px; }
.rc-logo { color: var(--primary-500); }
.rc-tagline { color: var(--body-text-color-subdued); font-size: 0.85rem; margin: 2px 0 10px; }
#rc-conversations .wrap { flex-direction: column; gap: 4px !important; }
#rc-conversations label { width: 100%; border-radius: 8px !important; padding: 8px 10px !important;
  background: transparent !important; border: 1px solid transparent !important; box-shadow: none !important; }
#rc-conversations label:hover { background: var(--background-fill-secondary) !important; }
#rc-conversations label.selected { background: var(--color-accent-soft) !important;
  border-color: var(--border-color-accent-subdued) !important; color: var(--body-text-color) !important; }
#rc-conversations label.selected span { color: var(--body-text-color) !important; font-weight: 600; }
#rc-conversations input[type=radio] { display: none; }
#rc-conversations span { white-space: nowrap; overflow: hidden; text-overflow: ellipsis; font-size: 0.92rem; }

/* ---------- chat ---------- */
#rc-chat { border-radius: 14px; }
#rc-chat .placeholder-content, #rc-chat .placeholder { text-align: left; max-width: 560px; margin: auto; }
#rc-input-row { margin-top: 6px; align-items: stretch; }
#rc-message textarea { font-size: 1rem; padding: 12px 14px; border-radius: 12px; }
#rc-send, #rc-stop { border-radius: 12px; }
#rc-chat-tools-row { align-items: center; margin-top: 2px; }
#rc-refresh-models { margin-top: 30px; }
#rc-side { gap: 10px; }
#rc-progress:not(:has(.rc-file-row)) { display: none; }
#rc-chat-tools .label-wrap { font-size: 0.88rem; justify-content: space-between; text-align: left; }

/* ---------- right column ---------- */
#rc-upload { border-radius: 12px; }
#rc-upload .wrap { font-size: 0.9rem; }
.rc-progress { display: flex; flex-direction: column; gap: 6px; margin: 2px 0 6px; max-height: 220px; overflow-y: auto; }
.rc-file-row { border: 1px solid var(--border-color-primary); border-radius: 10px; padding: 7px 10px;
  background: var(--block-background-fill); }
.rc-file-top { display: flex; justify-content: space-between; gap: 10px; font-size: 0.86rem; }
.rc-file-top .rc-file { font-weight: 600; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.rc-stage { color: var(--body-text-color-subdued); white-space: nowrap; }
.rc-failed .rc-stage { color: #c2410c; white-space: normal; text-align: right; }
.rc-done .rc-stage, .rc-unchanged .rc-stage { color: #15803d; }
.rc-bar { height: 4px; background: var(--background-fill-secondary); border-radius: 4px; margin-top: 6px; overflow: hidden; }
.rc-bar > div { height: 100%; background: var(--primary-500); transition: width .4s ease; }
.rc-done .rc-bar > div, .rc-unchanged .rc-bar > div { background: #22c55e; }
.rc-failed .rc-bar > div { background: #f97316; }

.rc-sources, .rc-viewer { border: 1px solid var(--border-color-primary); border-radius: 12px; padding: 10px 12px;
  background: var(--block-background-fill); }
.rc-empty { color: var(--body-text-color-subdued); font-size: 0.9rem; }
.rc-sources-title { font-weight: 650; font-size: 0.95rem; margin-bottom: 8px; display: flex; align-items: center; gap: 6px; }
.rc-count { background: var(--primary-500); color: white; border-radius: 999px; padding: 0 8px; font-size: 0.78rem; }
.rc-card { display: block; width: 100%; text-align: left; cursor: pointer; border: 1px solid var(--border-color-primary);
  border-radius: 10px; padding: 8px 10px; margin: 0 0 8px; background: var(--background-fill-primary);
  transition: border-color .15s, box-shadow .15s; font: inherit; color: inherit; }
.rc-card:hover { border-color: var(--primary-400); box-shadow: 0 1px 6px rgba(79, 70, 229, .15); }
.rc-card.rc-active { border-color: var(--primary-500); box-shadow: 0 0 0 2px var(--primary-200); }
.rc-card-head { display: flex; align-items: center; gap: 8px; font-size: 0.86rem; margin-bottom: 4px; }
.rc-num { display: inline-flex; align-items: center; justify-content: center; min-width: 22px; height: 22px;
  border-radius: 6px; background: var(--primary-500); color: white; font-weight: 700; font-size: 0.8rem; padding: 0 5px; }
.rc-card:not(.rc-cited) .rc-num { background: var(--neutral-400); }
.rc-file { font-weight: 600; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.rc-page { color: var(--body-text-color-subdued); white-space: nowrap; }
.rc-passage { display: block; font-size: 0.84rem; line-height: 1.4; color: var(--body-text-color-subdued); }
.rc-more summary { cursor: pointer; font-size: 0.86rem; color: var(--body-text-color-subdued); margin: 4px 0 8px; }

.rc-viewer-head { display: flex; align-items: center; gap: 8px; margin-bottom: 6px; font-size: 0.92rem; }
.rc-viewer-links { font-size: 0.85rem; margin-bottom: 6px; }
.rc-viewer-links a { color: var(--link-text-color); }
.rc-page-text { position: relative; max-height: 300px; overflow-y: auto; white-space: pre-wrap; font-size: 0.86rem;
  line-height: 1.5; padding: 8px 10px; border-radius: 8px; background: var(--background-fill-secondary); }
.rc-hl { background: #fde68a; color: #1f2937; border-radius: 3px; padding: 1px 0; box-shadow: 0 0 0 2px #fde68a; }
.rc-page-image { max-height: 60vh; overflow-y: auto; margin-bottom: 8px; border: 1px solid var(--border-color-primary);
  border-radius: 8px; background: white; }
.rc-page-image img { display: block; width: 100%; height: auto; }
.rc-pdf summary { cursor: pointer; font-size: 0.85rem; margin-bottom: 6px; color: var(--body-text-color-subdued); }
.rc-pdf iframe { width: 100%; height: 480px; border: 1px solid var(--border-color-primary); border-radius: 8px; }
.rc-note { font-size: 0.85rem; color: var(--body-text-color-subdued); }

/* ---------- library ---------- */
#rc-library { border-radius: 12px; }

/* ---------- drop anywhere ---------- */
body.rc-dragging::after { content: "Drop files to add them to your documents"; position: fixed; inset: 12px;
  display: flex; align-items: center; justify-content: center; font-size: 1.4rem; font-weight: 600;
  color: var(--primary-600, #4f46e5); background: rgba(238, 242, 255, .88); border: 3px dashed #6366f1;
  border-radius: 18px; z-index: 9999; pointer-events: none; }
"""
