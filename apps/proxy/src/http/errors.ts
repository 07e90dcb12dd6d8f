import type { ServerResponse } from 'node:http';
import { plainText } from '../serving/serving.js';

/** A plain-text error answer with its reason; a response already begun is cut instead. */
export function sendError(res: ServerResponse, status: number, message: string): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const { headers, body } = plainText(message);
  res.writeHead(status, headers);
  res.end(body);
}
