import '@imgproxy-cache/shared/require-node';
import { configOrExit, runMain } from '@imgproxy-cache/shared';
import { launch } from './launch.js';

// Entry point of `npm start` and the images' `all` and `all-in-one`. Process managers should run
// `node apps/launcher/dist/index.js` itself: npm does not pass signals on (launch.ts watches its
// parent for that case anyway).

runMain('npm start', async () => {
  const config = configOrExit(process.env, 'npm start');
  process.exit(await launch(config, process.env, { withImgproxy: process.argv.includes('--with-imgproxy') }));
});
