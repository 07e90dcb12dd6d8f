import type { Server } from 'node:http';
import type { BindAddress } from '../config/index.js';

// What stops a service at start with one line and exit code 2 (runMain): an address in use, a
// Redis that would lose jobs. Configuration errors (ConfigError) stop it the same way.

export class StartupError extends Error {
  override readonly name = 'StartupError';
}

/** Listens on `bind`, or fails with a StartupError naming `variable`. */
export function listen(server: Server, bind: BindAddress, variable: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const onError = (error: NodeJS.ErrnoException) => {
      const where = `${bind.host ?? ''}:${bind.port}`;
      if (error.code === 'EADDRINUSE')
        reject(new StartupError(`${variable} ${where} is already in use by another process: give this service another address (or another port)`));
      else if (error.code === 'EACCES') reject(new StartupError(`${variable} ${where} may not be used by this user (ports below 1024 need privileges)`));
      else if (error.code === 'EADDRNOTAVAIL') reject(new StartupError(`${variable} ${where} is not an address of this host`));
      else reject(error);
    };
    server.once('error', onError);
    server.listen(bind.port, bind.host, () => {
      server.off('error', onError);
      resolve();
    });
  });
}
