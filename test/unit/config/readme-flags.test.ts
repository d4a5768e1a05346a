// The README's flag table is written by hand; this keeps it from drifting from the option
// table that drives the parser and --help.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { OPTIONS } from '../../../src/config/options';

const README = readFileSync(path.resolve(__dirname, '../../../README.md'), 'utf8');

describe('README documents the flags', () => {
  it('names every option as `--name` in the text', () => {
    const missing = OPTIONS.map((o) => o.name).filter((n) => !new RegExp(`\`--${n}[\` ]`).test(README));
    expect(missing).toEqual([]);
  });
});
