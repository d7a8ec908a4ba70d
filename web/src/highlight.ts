// SQL highlighting with highlight.js (core + the PostgreSQL grammar only). highlight.js answers
// HTML with every character of the input escaped and only <span class="hljs-..."> added; that
// string is turned into DOM nodes here by a tiny reader that knows just those spans and the five
// entities, so the statement text never goes through innerHTML.
import hljs from 'highlight.js/lib/core';
import pgsql from 'highlight.js/lib/languages/pgsql';
import { h } from './dom';

hljs.registerLanguage('pgsql', pgsql);

const ENTITIES: Record<string, string> = { '&amp;': '&', '&lt;': '<', '&gt;': '>', '&quot;': '"', '&#x27;': "'", '&#39;': "'" };

function decode(text: string): string {
  return text.replace(/&(amp|lt|gt|quot|#x27|#39);/g, (m) => ENTITIES[m] ?? m);
}

function toNodes(html: string, root: HTMLElement): void {
  const stack: HTMLElement[] = [root];
  const re = /<span class="([a-z0-9_\- ]*)">|<\/span>|([^<]+)/gy;
  let m: RegExpExecArray | null;
  let pos = 0;
  while (pos < html.length) {
    re.lastIndex = pos;
    m = re.exec(html);
    if (!m) {
      // Not what highlight.js writes: show the rest as plain text.
      stack[stack.length - 1].append(decode(html.slice(pos)));
      return;
    }
    pos = re.lastIndex;
    const top = stack[stack.length - 1];
    if (m[1] !== undefined) {
      const span = document.createElement('span');
      span.className = m[1];
      top.appendChild(span);
      stack.push(span);
    } else if (m[2] !== undefined) {
      top.append(decode(m[2]));
    } else if (stack.length > 1) {
      stack.pop();
    }
  }
}

/** Fills `code` with `sql`, highlighted. */
export function highlightInto(code: HTMLElement, sql: string): HTMLElement {
  code.classList.add('hljs', 'language-pgsql');
  if (sql.length > 200_000) {
    code.textContent = sql;
    return code;
  }
  try {
    toNodes(hljs.highlight(sql, { language: 'pgsql', ignoreIllegals: true }).value, code);
  } catch {
    code.textContent = sql;
  }
  return code;
}

/** <pre><code data-testid=...> with the statement highlighted. */
export function sqlBlock(sql: string, testid = 'statement', cls = ''): HTMLElement {
  const code = h('code', { 'data-testid': testid });
  highlightInto(code, sql);
  return h('pre', { class: `sql ${cls}`.trim() }, code);
}
