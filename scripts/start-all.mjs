#!/usr/bin/env node
// `npm start` as it was first run: process managers set up with this path keep working. The
// launcher itself is apps/launcher.
import '../apps/launcher/dist/index.js';
