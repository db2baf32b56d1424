"""Start the ragchat web app: `python app.py [--host H] [--port P] [--store DIR] [--config FILE]`.

It only hands over to `ragchat serve`; everything is built in ragchat.engine from the settings.
"""

import sys

from ragchat.cli import main

if __name__ == "__main__":
    sys.exit(main(["serve", *sys.argv[1:]]))
