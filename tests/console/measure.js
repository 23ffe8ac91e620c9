// Evaluated in the page by tests/console/browsing.py's measure(): the page's horizontal
// overflow and the tap targets smaller than `minimum` CSS px in either direction.
// What a person can tap: links, buttons, fields; a checkbox or radio button is tapped
// through its label. Hidden and off-screen (the skip link until focused) are left out.
(minimum) => {
  const doc = document.documentElement;
  const small = [];
  const selector = 'a[href], button, input:not([type=hidden]), select, textarea, summary';
  for (const node of document.querySelectorAll(selector)) {
    if (!node.checkVisibility({ visibilityProperty: true })) continue;
    const target = node.matches('input[type=checkbox], input[type=radio]')
      ? (node.closest('label') || node) : node;
    const box = target.getBoundingClientRect();
    if (box.right <= 0 || box.bottom <= 0) continue;
    if (box.width < minimum - 0.5 || box.height < minimum - 0.5) {
      const name = (target.textContent || target.id || target.name || '').trim().slice(0, 40);
      small.push(`${target.tagName.toLowerCase()} "${name}" ${box.width.toFixed(0)}x${box.height.toFixed(0)}`);
    }
  }
  const wide = [];
  for (const node of document.body.querySelectorAll('*')) {
    const box = node.getBoundingClientRect();
    if (box.right > doc.clientWidth + 0.5 && node.checkVisibility()) {
      wide.push(`${node.tagName.toLowerCase()}#${node.id}.${node.className} right=${box.right.toFixed(0)}`);
    }
  }
  return { scrollWidth: doc.scrollWidth, clientWidth: doc.clientWidth, small, wide: wide.slice(0, 5) };
}
