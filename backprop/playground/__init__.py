"""The playground: a page that trains a backprop network while you watch (``backprop playground``).

Needs the ``playground`` extra (Starlette and uvicorn): ``pip install 'backprop[playground]'``.
"""
