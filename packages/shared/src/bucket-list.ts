import type { BucketClient } from './s3-client.js';

// Listing the keys under a prefix. ListObjects (v1) and its markers, 1000 keys a request: every
// provider has it, and s3rver's v2 continuation fails past 1000 keys.

/** Every key under `prefix`, page by page; stops (undefined) past `maxPages` requests. */
export async function listKeys(
  client: BucketClient,
  prefix: string,
  maxPages = Number.POSITIVE_INFINITY,
  onPage?: (keys: string[]) => void,
): Promise<string[] | undefined> {
  const keys: string[] = [];
  for (let marker = '', pages = 0; ; pages++) {
    if (pages >= maxPages) return undefined;
    const query: Record<string, string> = { 'max-keys': '1000' };
    if (prefix) query.prefix = prefix;
    if (marker) query.marker = marker;
    const { body } = await client.send({ operation: 'ListObjects', method: 'GET', key: '', query });
    const xml = body.toString('utf8');
    const page = [...xml.matchAll(/<Key>([^<]*)<\/Key>/g)].map((m) => unescapeXml(m[1]!));
    keys.push(...page);
    onPage?.(page);
    if (!/<IsTruncated>true<\/IsTruncated>/.test(xml) || page.length === 0) return keys;
    marker = page.at(-1)!;
  }
}

const ENTITIES: Record<string, string> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };
const unescapeXml = (s: string) => s.replace(/&(lt|gt|amp|quot|apos);/g, (_, e: string) => ENTITIES[e]!);
